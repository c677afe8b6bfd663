import numpy as np
import pandas as pd
import pytest

from pldc_core.records.schema import ERROR_TYPES
from pldc_core.structures import size_category
from workbench.error_breakdown import SIZES, dominant_error, error_breakdown, size_codes


def _queries(types, areas, keep=None, hw=(480, 640)):
    n = len(types)
    return pd.DataFrame({"error_type": pd.array(types, dtype="str"), "area": np.asarray(areas, np.int64),
                         "height": np.full(n, hw[0], np.int32), "width": np.full(n, hw[1], np.int32),
                         "keep_ddtf": np.asarray(keep if keep is not None else [True] * n, bool)})


def test_size_codes_agree_with_size_category():
    rng = np.random.default_rng(0)
    for h, w in [(480, 640), (64, 80), (1024, 2048), (1, 1)]:
        scale = h * w / (640 * 480)
        edges = [int(np.floor(32 ** 2 * scale)), int(np.ceil(32 ** 2 * scale)),
                 int(np.floor(96 ** 2 * scale)), int(np.ceil(96 ** 2 * scale))]
        areas = np.concatenate([[0, 1, h * w], edges, rng.integers(0, h * w + 1, 200)])
        codes = size_codes(areas, np.full(len(areas), h), np.full(len(areas), w))
        expected = [SIZES.index(size_category(int(a), h, w)) for a in areas]
        assert codes.tolist() == expected, (h, w)


def test_hand_worked_breakdown():
    # 640 x 480 images: small < 1024 <= medium < 9216 <= large.
    q = _queries(["Cor", "BG", "Oth", "Cor", "Loc", None], [100, 0, 2000, 10000, 9216, 50000])
    eb = error_breakdown(q)
    assert eb.n == 5 and eb.has_gt  # the row with unknown GT is left out
    t = eb.table.set_index(["size", "error_type"])
    assert [t.loc[("all", e), "count"] for e in ERROR_TYPES] == [2, 0, 1, 1, 1, 0]
    assert t.loc[("all", "Cor"), "share"] == pytest.approx(0.4)
    assert t.loc[("small", "BG"), "share"] == pytest.approx(0.5)  # the empty mask (area 0) is small
    assert t.loc[("medium", "Oth"), "share"] == pytest.approx(1.0)
    assert t.loc[("large", "Loc"), "count"] == 1 and t.loc[("large", "Cor"), "count"] == 1
    assert len(eb.table) == 4 * len(ERROR_TYPES)
    assert dominant_error(eb) == ("Oth", pytest.approx(0.2))  # Oth, Loc, BG tie: the first in order


def test_only_kept():
    q = _queries(["Cor", "BG", "Oth"], [100, 100, 100], keep=[True, False, False])
    eb = error_breakdown(q, kept_by="ddtf")
    assert eb.n == 1 and eb.overall()["Cor"] == 1.0
    assert dominant_error(eb) is None  # nothing but Cor


def test_no_gt_no_predictions_all_filtered():
    for eb in (error_breakdown(_queries([None, None], [5, 5])), error_breakdown(_queries([], [])),
               error_breakdown(_queries(["Cor"], [5], keep=[False]), kept_by="ddtf")):
        assert eb.n == 0 and not eb.has_gt
        assert (eb.table["count"] == 0).all() and eb.table["share"].isna().all()
        assert dominant_error(eb) is None


def test_unknown_type_is_an_error():
    with pytest.raises(ValueError, match="unknown error type"):
        error_breakdown(_queries(["Cor", "Wrong"], [1, 1]))
