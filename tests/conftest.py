import os

os.environ.setdefault("PLDC_NO_PROGRESS", "1")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A tiny synthetic dataset (40 train, 8 val images, 25% labeled split), made once per test module."""
    from pldc_core.data.coco import load_coco
    from pldc_core.data.splits import write_splits
    from pldc_core.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("data")
    generate_synthetic(root / "synthetic", n_train=40, n_val=8, seed=3, progress=False)
    index = load_coco(root / "synthetic" / "annotations" / "instances_train.json", root / "synthetic" / "train")
    write_splits(root / "splits" / "synthetic.json", index.image_ids, percents=(25,), seeds=(0,), dataset="synthetic")
    return root
