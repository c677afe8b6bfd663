import itertools

import pytest
import torch

from pldc_core.data.augment import EvalResize, StrongPhotometric, TrainAugment
from pldc_core.data.coco import DatasetError, load_coco
from pldc_core.data.loader import (LabeledDataset, UnlabeledDataset, UnlabeledPair, derive_seed,
                                   infinite_batches)
from pldc_core.data.synthetic import generate_synthetic
from pldc_core.structures import InstanceSample


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "synthetic"
    generate_synthetic(out, n_train=10, n_val=1, min_size=64, max_size=80, seed=1, workers=1, progress=False)
    return load_coco(out / "annotations" / "instances_train.json", out / "train")


def test_labeled_item_without_augmentation(index):
    ds = LabeledDataset(index, index.image_ids[:3])
    item = ds[1]
    image_id = index.image_ids[1]
    masks, labels, ann_ids = index.instances(image_id)
    assert isinstance(item, InstanceSample) and item.image_id == image_id
    assert torch.equal(item.image, index.load_image(image_id))
    assert torch.equal(item.masks, masks) and torch.equal(item.labels, labels)
    assert torch.equal(item.meta["ann_ids"], ann_ids) and bool(item.meta["valid"].all())
    assert item.meta["orig_size"] == tuple(item.image.shape[-2:])


def test_labeled_item_with_augmentation_keeps_labels_with_their_masks(index):
    ds = LabeledDataset(index, index.image_ids, TrainAugment(32, scale_range=(0.5, 1.0)))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for i in range(len(ds)):
            item = ds[i]
            assert item.image.shape == (3, 32, 32) and item.masks.shape[1:] == (32, 32)
            masks, labels, ann_ids = index.instances(item.image_id)
            # every kept mask is non-empty and carries the label of the annotation it came from
            assert bool(item.masks.flatten(1).any(1).all())
            by_ann = dict(zip(ann_ids.tolist(), labels.tolist()))
            assert [by_ann[a] for a in item.meta["ann_ids"].tolist()] == item.labels.tolist()
            assert item.meta["valid"].dtype == torch.bool and item.meta["valid"].shape == (32, 32)


def test_unlabeled_dataset_cannot_see_annotations(index):
    with pytest.raises(TypeError, match="takes an ImageList"):
        UnlabeledDataset(index, index.image_ids)
    images = index.images_only(index.image_ids[:4])
    ds = UnlabeledDataset(images, images.image_ids)
    assert not any(hasattr(ds.images, name) for name in ("annotations", "instances", "json_path", "categories"))
    with pytest.raises(DatasetError, match=f"image id {index.image_ids[5]} is not in the dataset"):
        UnlabeledDataset(images, [index.image_ids[5]])


def test_unlabeled_pair_shares_geometry(index):
    images = index.images_only()
    no_noise = StrongPhotometric(color_jitter_p=0, grayscale_p=0, blur_p=0, cutout_p=(0, 0, 0))
    plain = UnlabeledDataset(images, images.image_ids, TrainAugment(40), no_noise)
    noisy = UnlabeledDataset(images, images.image_ids, TrainAugment(40), StrongPhotometric())
    for i in range(4):
        with torch.random.fork_rng():
            torch.manual_seed(i)
            pair = plain[i]
        with torch.random.fork_rng():
            torch.manual_seed(i)
            other = noisy[i]
        assert isinstance(pair, UnlabeledPair) and pair.image_id == images.image_ids[i]
        assert pair.weak.masks.shape == (0, 40, 40) and pair.weak.labels.numel() == 0
        # with the photometric noise switched off the strong view is the weak view itself
        assert torch.equal(pair.strong_image, pair.weak.image)
        # same RNG -> same weak view whatever the strong noise; the padding stays 0 in both views
        assert torch.equal(other.weak.image, pair.weak.image)
        assert torch.equal(other.weak.meta["valid"], pair.weak.meta["valid"])
        assert float(other.strong_image[:, ~other.weak.meta["valid"]].abs().sum()) == 0.0


def test_eval_resize(index):
    image = index.load_image(index.image_ids[0])
    h, w = index.image_info(index.image_ids[0])["height"], index.image_info(index.image_ids[0])["width"]
    scale = 80 / max(h, w)
    padded, resized_hw = EvalResize(80)(image)
    assert padded.shape == (3, 80, 80)
    assert tuple(image.shape[-2:]) == (h, w)
    assert resized_hw == (round(h * scale), round(w * scale))
    # works from an ImageList too (recording pseudo-labels of unlabeled images)
    assert torch.equal(EvalResize(80)(index.images_only().load_image(index.image_ids[0]))[0], padded)


class _Probe(torch.utils.data.Dataset):
    """Item = (index, a draw from torch's RNG): shows which item came and with which randomness."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, torch.rand(()).item()


def _take(n, **kw):
    return list(itertools.islice(infinite_batches(**kw), n))


def test_batches_are_deterministic_and_cover_each_epoch():
    a = _take(6, dataset=_Probe(5), batch_size=2, seed=3)
    assert a == _take(6, dataset=_Probe(5), batch_size=2, seed=3)
    assert a != _take(6, dataset=_Probe(5), batch_size=2, seed=4)
    flat = [i for batch in a for i, _ in batch]
    assert sorted(flat[:5]) == [0, 1, 2, 3, 4] and sorted(flat[5:10]) == [0, 1, 2, 3, 4]
    assert flat[:5] != flat[5:10]  # a new permutation per epoch (for this seed)
    # the same image seen in two epochs gets different augmentation randomness
    draws = {}
    for batch in a:
        for i, r in batch:
            draws.setdefault(i, []).append(r)
    assert all(len(set(r)) == len(r) for r in draws.values())


def test_resume_sees_the_same_batches():
    full = _take(7, dataset=_Probe(9), batch_size=3, seed=11)
    resumed = _take(3, dataset=_Probe(9), batch_size=3, seed=11, start_iter=4)
    assert resumed == full[4:7]


def test_ranks_split_the_global_batch():
    single = _take(4, dataset=_Probe(10), batch_size=4, seed=2)
    ranks = [_take(4, dataset=_Probe(10), batch_size=2, seed=2, rank=r, world_size=2) for r in (0, 1)]
    for t in range(4):
        assert ranks[0][t] + ranks[1][t] == single[t]


def test_fetch_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _take(2, dataset=_Probe(4), batch_size=2, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_worker_processes_give_the_same_batches(index):
    ds = LabeledDataset(index, index.image_ids, TrainAugment(32))
    serial = _take(3, dataset=ds, batch_size=2, seed=5, start_iter=1)
    parallel = _take(3, dataset=ds, batch_size=2, seed=5, start_iter=1, num_workers=2)
    for a, b in zip(serial, parallel):
        for x, y in zip(a, b):
            assert x.image_id == y.image_id
            assert torch.equal(x.image, y.image) and torch.equal(x.masks, y.masks)
            assert torch.equal(x.labels, y.labels)


def test_augmented_views_are_reproducible_per_iteration(index):
    ds = LabeledDataset(index, index.image_ids, TrainAugment(32))
    first = _take(2, dataset=ds, batch_size=3, seed=9)
    again = _take(2, dataset=ds, batch_size=3, seed=9)
    assert all(torch.equal(x.image, y.image) and torch.equal(x.masks, y.masks)
               for a, b in zip(first, again) for x, y in zip(a, b))


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty dataset"):
        infinite_batches(_Probe(0), 2, seed=0)
    with pytest.raises(ValueError, match="rank"):
        infinite_batches(_Probe(3), 2, seed=0, rank=2, world_size=2)
    assert derive_seed("item", 1, 2, 3) == derive_seed("item", 1, 2, 3) < 2 ** 63


def test_a_global_batch_is_shared_among_the_processes():
    from pldc_core.config import ConfigError
    from pldc_core.distributed import batch_share

    assert batch_share(8, "global", "train.batch_labeled", processes=4) == 2
    assert batch_share(8, "per_rank", "train.batch_labeled", processes=4) == 8
    with pytest.raises(ConfigError, match=r"train\.batch_unlabeled: the batch size 6 is global .* among 4 processes"):
        batch_share(6, "global", "train.batch_unlabeled", processes=4)


def test_labeled_strong_view_shares_geometry_and_masks(index):
    torch.manual_seed(0)
    strong = StrongPhotometric(color_jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, cutout_p=(1.0, 1.0, 1.0))
    dataset = LabeledDataset(index, index.image_ids[:3], TrainAugment(96, scale_range=(0.5, 0.6)), strong)
    sample = dataset[0]
    view = sample.meta["strong_image"]
    assert view.shape == sample.image.shape
    changed = (view != sample.image).any(0)
    # only cutout acts here: every changed pixel is a black patch, the rest is the weak view's pixel
    assert changed.any() and (view[:, changed] == 0).all()
    assert not view[:, ~sample.meta["valid"]].any()  # padding stays 0
    assert "strong_image" not in LabeledDataset(index, index.image_ids[:1], TrainAugment(96))[0].meta
