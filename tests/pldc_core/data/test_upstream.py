"""The upstream corpus: a broader vocabulary than the benchmark, its own seeds, captions from what was drawn."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pldc_core.data.coco import annotation_mask, load_coco
from pldc_core.data.synthetic import SHAPES, SYNTHETIC_CLASSES, _shape_outline, generate_synthetic
from pldc_core.data.upstream import UPSTREAM_CLASSES, caption, colour_name, generate_upstream


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    out = tmp_path_factory.mktemp("up") / "upstream"
    info = generate_upstream(out, n_train=24, n_val=4, seed=0, workers=1, progress=False)
    return out, info


def test_vocabulary_contains_the_benchmark_and_more():
    names = [c.name for c in UPSTREAM_CLASSES]
    assert len(names) == len(set(names)) == len(SHAPES) >= 3 * len(SYNTHETIC_CLASSES)
    assert {c.name for c in SYNTHETIC_CLASSES} < set(names)
    assert [c.id for c in UPSTREAM_CLASSES] == list(range(1, len(names) + 1))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_is_a_simple_closed_outline(name):
    outer, hole = _shape_outline(name, np.random.default_rng(0))
    assert outer.ndim == 2 and outer.shape[1] == 2 and len(outer) >= 3
    assert np.abs(outer).max() <= 3.0  # unit coordinates (a capsule reaches 2.8)
    # a non-zero area (shoelace), larger than its hole's
    area = lambda p: 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))
    assert area(outer) > 0.2 and (hole is None or area(hole) < area(outer))


def test_corpus_is_coco_with_captions_of_what_was_drawn(upstream):
    out, info = upstream
    data = json.loads((out / "annotations" / "instances_train.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert len(names) == len(UPSTREAM_CLASSES) and info["train"]["instances"] == len(data["annotations"]) > 24
    index = load_coco(out / "annotations" / "instances_train.json", out / "train")
    for ann in data["annotations"]:
        shape = names[ann["category_id"]]
        assert ann["caption"] == caption(shape, ann["attributes"]) and ann["caption"].endswith(shape)
        assert set(ann["attributes"]) == {"colour", "texture"}
    # the caption's colour is the object's: its mean colour is nearest to the named base colour
    # for plain objects (textures mix in a second colour)
    ann = next(a for a in data["annotations"] if a["attributes"]["texture"] == "plain" and a["area"] > 100)
    info_ = index.image_info(ann["image_id"])
    mask = annotation_mask(ann["segmentation"], info_["height"], info_["width"])
    pixels = index.load_image(ann["image_id"]).permute(1, 2, 0).numpy()[mask]
    assert np.abs(pixels.mean(0) - np.array(ann["attributes"]["colour"])).max() < 0.2


def test_no_upstream_image_is_a_benchmark_image(upstream, tmp_path):
    out, _ = upstream
    bench = tmp_path / "synthetic"
    generate_synthetic(bench, n_train=24, n_val=4, seed=0, workers=1, progress=False)
    for split in ("train", "val"):
        ours = {p.name: p.read_bytes() for p in (out / split).glob("*.png")}
        theirs = {p.read_bytes() for p in (bench / split).glob("*.png")}
        assert ours and not set(ours.values()) & theirs


def test_colour_words():
    assert colour_name((0.9, 0.1, 0.1)) == "red"
    assert colour_name((0.1, 0.2, 0.9)) == "blue"
    assert colour_name((0.1, 0.8, 0.2)) == "green"
    assert colour_name((0.05, 0.05, 0.05)) == "black"
    assert colour_name((0.95, 0.95, 0.95)) == "white"
    assert caption("ellipse", {"colour": (0.9, 0.5, 0.1), "texture": "striped"}) == "an orange striped ellipse"
    assert caption("disk", {"colour": (0.5, 0.5, 0.5), "texture": "plain"}) == "a grey disk"


def test_cli_makes_the_corpus(tmp_path, capsys):
    from pldc_core.cli import main

    assert main(["data", "make-upstream", "--out", str(tmp_path / "up"), "--train", "3", "--val", "1",
                 "--workers", "1"]) == 0
    assert "3 train / 1 val images" in capsys.readouterr().out
    assert main(["data", "make-upstream", "--out", str(tmp_path / "up"), "--train", "0"]) == 1
    assert "n_train >= 1" in capsys.readouterr().err
