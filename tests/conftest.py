import os

os.environ.setdefault("PLDC_NO_PROGRESS", "1")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A tiny synthetic dataset (40 train, 8 val images, 25% labeled split), made once per test module."""
    from tests.tiny import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("data"), n_train=40, n_val=8)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished smoke run on a tiny dataset of its own (``tiny.train_tiny_run``), made once per session.
    Read it only; a test that damages a run works on a copy."""
    from tests.tiny import make_tiny_dataset, train_tiny_run

    root = make_tiny_dataset(tmp_path_factory.mktemp("tiny-run-data"), n_train=40, n_val=8)
    return train_tiny_run(root, tmp_path_factory.mktemp("tiny-run") / "run")
