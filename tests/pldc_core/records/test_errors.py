import numpy as np
import pytest
import torch

from pldc_core.records.errors import classify_errors
from pldc_core.records.schema import ERROR_TYPES
from pldc_core.rle import encode_masks
from pldc_core.rle import mask_iou_matrix

# classes 0, 1 are animals; 2, 3 vehicles
SUPER = {0: "animal", 1: "animal", 2: "vehicle", 3: "vehicle"}


def _check(pred, gt, iou, expected, supercategory=SUPER):
    result = classify_errors(np.array(pred), np.array(gt), np.array(iou, dtype=float), supercategory)
    assert list(result.types) == [t for t, _ in expected]
    assert result.gt_index.tolist() == [i for _, i in expected]
    assert result.codes.dtype == np.int8 and result.gt_index.dtype == np.int64
    return result


def test_each_type_with_the_gt_that_decides_it():
    gt = [0, 1, 2]  # cat-like, dog-like, car-like
    iou = [
        [0.7, 0.9, 0.0],   # class 0: same-class GT 0 > 0.5 -> Cor on GT 0, though GT 1 overlaps more
        [0.3, 0.8, 0.6],   # class 0: GT 1 (same supercategory) > 0.5 -> Sim on GT 1
        [0.45, 0.1, 0.9],  # class 0: only GT 2 (other supercategory) > 0.5 -> Oth, before Loc
        [0.4, 0.45, 0.3],  # class 0: nothing > 0.5, same-class GT 0 overlaps -> Loc on GT 0
        [0.0, 0.0, 0.0],   # class 0: no overlap -> BG
        [0.0, 0.3, 0.2],   # class 3: only other-class GTs overlap, <= 0.5 -> Both on the best GT 1
        [0.5, 0.0, 0.0],   # class 0: IoU exactly 0.5 is not a match -> Loc
        [0.6, 0.6, 0.0],   # class 1: same-class GT 1 wins over same-supercategory GT 0 -> Cor
        [0.9, 0.0, 0.6],   # class 3: GT 2 (vehicle) > 0.5 -> Sim on GT 2 though GT 0 has a higher IoU
        [0.2, 0.4, 0.0],   # class 0: same-class GT 0 overlaps -> Loc on GT 0, though GT 1 overlaps more
    ]
    pred = [0, 0, 0, 0, 0, 3, 0, 1, 3, 0]
    _check(pred, gt, iou, [("Cor", 0), ("Sim", 1), ("Oth", 2), ("Loc", 0), ("BG", -1), ("Both", 1),
                           ("Loc", 0), ("Cor", 1), ("Sim", 2), ("Loc", 0)])


def test_oth_picks_the_best_gt_and_cor_the_best_same_class_gt():
    # two same-class GTs: the better one decides; Oth: the best of the other-supercategory GTs
    _check([0, 0], [0, 0, 2, 3], [[0.6, 0.8, 0.0, 0.0], [0.0, 0.0, 0.7, 0.9]], [("Cor", 1), ("Oth", 3)])


def test_ties_go_to_the_lowest_gt_index():
    _check([0, 0, 0, 0], [1, 0, 0, 2],
           [[0.0, 0.7, 0.7, 0.0],   # Cor tie between GT 1 and 2
            [0.0, 0.3, 0.3, 0.0],   # Loc tie
            [0.6, 0.0, 0.0, 0.6],   # Sim: only GT 0 is same-supercategory
            [0.0, 0.0, 0.0, 0.0]],
           [("Cor", 1), ("Loc", 1), ("Sim", 0), ("BG", -1)])
    _check([2], [0, 1], [[0.4, 0.4]], [("Both", 0)])


def test_no_gt_makes_everything_background():
    result = _check([0, 1, 2], [], np.zeros((3, 0)), [("BG", -1)] * 3)
    assert len(result) == 3


def test_no_predictions_give_empty_results():
    for G in (0, 2):
        result = classify_errors(np.zeros(0, dtype=int), np.arange(G), np.zeros((0, G)), SUPER)
        assert result.codes.shape == (0,) and result.gt_index.shape == (0,) and list(result.types) == []


def test_supercategory_as_a_sequence_indexed_by_class():
    _check([1], [0], [[0.8]], [("Sim", 0)], supercategory=["animal", "animal", "vehicle"])
    _check([2], [0], [[0.8]], [("Oth", 0)], supercategory=["animal", "animal", "vehicle"])


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="shape"):
        classify_errors([0, 1], [0], np.zeros((1, 2)), SUPER)
    with pytest.raises(ValueError, match=r"\[7\]"):
        classify_errors([7], [0], [[0.9]], SUPER)
    with pytest.raises(ValueError, match="NaN"):
        classify_errors([0], [0], [[np.nan]], SUPER)


def _reference(pred, gt, iou, sup):
    """The Fig. 5 rules, one prediction at a time, written straight from docs/METHOD.md."""
    out = []
    for p in range(len(pred)):
        same = [g for g in range(len(gt)) if gt[g] == pred[p]]
        sim = [g for g in range(len(gt)) if gt[g] != pred[p] and sup[gt[g]] == sup[pred[p]]]
        best = lambda gs: max(gs, key=lambda g: (iou[p, g], -g))  # noqa: E731
        if any(iou[p, g] > 0.5 for g in same):
            out.append(("Cor", best(same)))
        elif any(iou[p, g] > 0.5 for g in sim):
            out.append(("Sim", best([g for g in sim if iou[p, g] > 0.5])))
        elif any(iou[p] > 0.5):
            out.append(("Oth", best(range(len(gt)))))
        elif any(iou[p, g] > 0 for g in same):
            out.append(("Loc", best(same)))
        elif not any(iou[p] > 0):
            out.append(("BG", -1))
        else:
            out.append(("Both", best(range(len(gt)))))
    return out


def test_matches_a_per_prediction_reference_on_random_cases():
    rng = np.random.default_rng(0)
    sup = ["a", "a", "a", "b", "b", "c"]
    for _ in range(200):
        P, G = rng.integers(0, 8), rng.integers(0, 6)
        pred, gt = rng.integers(0, 6, P), rng.integers(0, 6, G)
        iou = np.round(rng.uniform(-0.5, 1.0, (P, G)).clip(0), 1)  # zeros, ties and exact 0.5 occur
        result = classify_errors(pred, gt, iou, sup)
        assert list(zip(result.types, result.gt_index.tolist())) == _reference(pred, gt, iou, sup)


def test_all_type_names_are_the_schemas():
    result = classify_errors([0], [0], [[0.9]], SUPER)
    assert result.types[0] in ERROR_TYPES and ERROR_TYPES[result.codes[0]] == "Cor"


def test_mask_iou_matrix_from_arrays_tensors_and_rles():
    a = np.zeros((4, 4), dtype=bool)
    a[:2, :2] = True                      # 4 pixels
    b = np.zeros((4, 4), dtype=bool)
    b[0, :] = True                        # 4 pixels, 2 shared with a -> 2 / 6
    c = np.zeros((4, 4), dtype=bool)      # empty
    pred, gt = np.stack([a, b, c]), np.stack([a, b])
    expected = np.array([[1.0, 1 / 3], [1 / 3, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(mask_iou_matrix(pred, gt), expected)
    np.testing.assert_allclose(mask_iou_matrix(torch.from_numpy(pred), list(gt)), expected)
    np.testing.assert_allclose(mask_iou_matrix(encode_masks(pred), encode_masks(gt)), expected)


def test_mask_iou_matrix_empty_and_mismatched():
    gt = np.ones((2, 4, 4), dtype=bool)
    assert mask_iou_matrix(np.zeros((0, 4, 4), dtype=bool), gt).shape == (0, 2)
    assert mask_iou_matrix(gt, []).shape == (2, 0)
    with pytest.raises(ValueError, match="different sizes"):
        mask_iou_matrix(np.ones((1, 4, 5), dtype=bool), gt)
