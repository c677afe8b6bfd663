import hashlib
import json

import pytest

from apps.cli import main
from pldc_core.data.coco import DatasetError
from pldc_core.data.splits import load_split, make_splits, num_labeled, percent_key, write_splits


@pytest.mark.parametrize("percent, n, expected", [
    (1, 250, 2), (2, 250, 5), (5, 250, 12), (10, 250, 25),   # int(p% of N): 2.5 -> 2, 12.5 -> 12
    (1, 10, 1),                                              # at least one labeled image
    (1, 118287, 1182), (10, 118287, 11828),                  # COCO train2017
    (100, 7, 7), (0.5, 1000, 5),
])
def test_num_labeled(percent, n, expected):
    assert num_labeled(percent, n) == expected


def test_percent_keys():
    assert [percent_key(p) for p in (1, 5.0, 0.5, 100)] == ["1", "5", "0.5", "100"]
    for bad in (0, -1, 101):
        with pytest.raises(ValueError, match="percent must be in"):
            percent_key(bad)


def test_splits_are_disjoint_covering_sorted_and_sized():
    ids = list(range(1000, 1250))
    splits = make_splits(ids)
    assert splits["num_images"] == 250
    assert set(splits["splits"]) == {"1", "2", "5", "10"}
    for key, by_seed in splits["splits"].items():
        assert set(by_seed) == {"0", "1", "2"}
        for entry in by_seed.values():
            labeled, unlabeled = entry["labeled"], entry["unlabeled"]
            assert len(labeled) == num_labeled(float(key), 250)
            assert not set(labeled) & set(unlabeled)
            assert sorted(labeled + unlabeled) == ids
            assert labeled == sorted(labeled) and unlabeled == sorted(unlabeled)
    # seeds give different draws
    ten = splits["splits"]["10"]
    assert ten["0"]["labeled"] != ten["1"]["labeled"] != ten["2"]["labeled"]


def test_splits_follow_the_documented_rule():
    # rank of an image for (percent, seed) = sha256("percent:seed:id"); the lowest ranks are labeled
    ids = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38]
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"20:1:{i}".encode()).digest())
    assert make_splits(ids, percents=[20], seeds=[1])["splits"]["20"]["1"]["labeled"] == sorted(ranked[:2])


def test_splits_are_reproducible_and_ignore_id_order():
    ids = list(range(1, 501))
    a = make_splits(ids, percents=[1, 5], seeds=[0, 7])
    b = make_splits(list(reversed(ids)), percents=[1, 5], seeds=[0, 7])
    assert a == b


def test_duplicate_or_empty_ids():
    with pytest.raises(ValueError, match="image id 4 appears more than once"):
        make_splits([1, 4, 2, 4])
    with pytest.raises(ValueError, match="empty"):
        make_splits([])


def test_write_and_load(tmp_path):
    path = tmp_path / "s.json"
    write_splits(path, range(1, 101), percents=[5, 0.5], seeds=[0, 1], dataset="toy")
    content = json.loads(path.read_text())
    assert content["dataset"] == "toy" and content["num_images"] == 100
    labeled, unlabeled = load_split(path, 5, 1)
    assert labeled == content["splits"]["5"]["1"]["labeled"] and len(labeled) == 5 and len(unlabeled) == 95
    assert load_split(path, 0.5, 0)[0] == content["splits"]["0.5"]["0"]["labeled"]
    with pytest.raises(DatasetError, match=r"s\.json: no split for percent 10 \(available: 0.5, 5\)"):
        load_split(path, 10, 0)
    with pytest.raises(DatasetError, match=r"s\.json: percent 5 has no seed 2 \(available: 0, 1\)"):
        load_split(path, 5, 2)


def test_load_rejects_broken_files(tmp_path):
    path = tmp_path / "s.json"
    with pytest.raises(DatasetError, match="split file not found"):
        load_split(path, 1, 0)
    path.write_text("{oops")
    with pytest.raises(DatasetError, match=r"s\.json: malformed JSON at line 1"):
        load_split(path, 1, 0)
    path.write_text(json.dumps({"num_images": 3, "splits": {"1": {"0": {"labeled": [1], "unlabeled": [1, 2]}}}}))
    with pytest.raises(DatasetError, match="image id 1 is both labeled and unlabeled"):
        load_split(path, 1, 0)
    path.write_text(json.dumps({"num_images": 4, "splits": {"1": {"0": {"labeled": [1], "unlabeled": [2, 3]}}}}))
    with pytest.raises(DatasetError, match="but num_images is 4"):
        load_split(path, 1, 0)


def test_cli_split(tmp_path, capsys):
    coco = {"images": [{"id": i, "file_name": f"{i}.png", "height": 4, "width": 4} for i in range(1, 41)],
            "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(coco))
    out = tmp_path / "splits.json"
    assert main(["data", "split", "--json", str(ann), "--percent", "10", "50", "--seeds", "0", "1",
                 "--out", str(out)]) == 0
    assert "10%: 4 labeled / 36 unlabeled" in capsys.readouterr().out
    assert len(load_split(out, 50, 1)[0]) == 20

    assert main(["data", "split", "--json", str(tmp_path / "missing.json"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "missing.json: annotation file not found" in err and "Traceback" not in err
    assert main(["data", "split", "--dataset", "nope", "--data-root", str(tmp_path)]) == 1
    assert "unknown dataset 'nope'; known: synthetic, upstream, coco2017, cityscapes" in capsys.readouterr().err
