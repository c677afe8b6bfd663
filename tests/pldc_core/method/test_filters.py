import numpy as np
import pytest
import torch

from pldc_core.method.filters import Thresholds, coupled_keep, ddtf_keep
from pldc_core.records.schema import Manifest


def test_thresholds_keep_the_filters_queries_on_tensors_and_arrays():
    c = [0.9, 0.9, 0.8, 0.5]
    m = [0.95, 0.85, 0.99, 0.5]
    for make in (torch.tensor, np.array):
        cc, mm = make(c), make(m)
        assert Thresholds("ddtf", 0.85, 0.9, 0.765).keep(cc, mm).tolist() == ddtf_keep(cc, mm, 0.85, 0.9).tolist()
        assert Thresholds("coupled", 0.85, 0.9, 0.765).keep(cc, mm).tolist() == coupled_keep(cc, mm, 0.765).tolist()
        assert Thresholds("none").keep(cc, mm).tolist() == [True] * 4
    with pytest.raises(ValueError, match="unknown pseudo-label filter 'dtf'"):
        Thresholds("dtf")


def test_thresholds_of_a_manifest_and_the_run_s_keep_column():
    t = Thresholds.of_manifest({"thresholds": {"filter": "coupled", "c_t": 0.5, "m_t": 0.6, "s_t": 0.3}})
    assert (t.kept_by, t.keep_column, t.describe()) == ("coupled", "keep_coupled", "s >= 0.30")
    # written before the mask-area filter existed: no area threshold (0)
    assert t.as_dict() == {"filter": "coupled", "c_t": 0.5, "m_t": 0.6, "s_t": 0.3, "mask_area_threshold": 0}
    default = Thresholds.of_manifest({})
    assert (default.filter, default.c_t, default.m_t, default.s_t, default.mask_area_threshold) == (
        "ddtf", 0.85, 0.9, 0.765, 0)
    assert Thresholds("none").kept_by == "ddtf"  # records hold keep_ddtf and keep_coupled only


def test_thresholds_carry_the_mask_area_threshold():
    from pathlib import Path

    from pldc_core.config import load_config

    t = Thresholds.of_manifest({"thresholds": {"filter": "ddtf", "c_t": 0.5, "m_t": 0.6, "s_t": 0.3,
                                               "mask_area_threshold": 5}})
    assert t.mask_area_threshold == 5 and Thresholds.of(t.as_dict()) == t
    assert t.describe() == "c >= 0.50 and m >= 0.60, mask > 5 px"
    assert Thresholds.of({"mask_area_threshold": None}).mask_area_threshold == 0
    cfg = load_config(Path(__file__).resolve().parents[3] / "configs" / "paper.yaml")
    assert Thresholds.of_config(cfg.pldc).mask_area_threshold == cfg.pldc.mask_area_threshold == 5


def test_typed_manifest():
    m = Manifest.of({"run": "r", "iteration": 500, "phase": "semi", "dataset": "d", "image_root": "/i",
                     "categories": [{"id": 3, "name": "dog", "supercategory": "animal"},
                                    {"id": 1, "name": "cat", "supercategory": "animal"}],
                     "thresholds": {"filter": "ddtf", "c_t": 0.7, "m_t": 0.8, "s_t": 0.5},
                     "dicc": {"enabled": True, "w": 0.25}})
    assert m.class_names == ["dog", "cat"]  # index order, as written
    assert (m.iteration, m.thresholds.c_t, m.dicc_enabled, m.dicc_w) == (500, 0.7, True, 0.25)
    assert Manifest.of({}).class_names == []
