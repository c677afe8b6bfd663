from pldc_core.method.filters import Thresholds
from pldc_core.records.schema import ERROR_TYPES
from workbench import explain


def test_every_error_type_has_a_name_and_a_rule():
    assert set(explain.ERROR_TYPE_NAMES) == set(explain.ERROR_TYPE_RULES) == set(ERROR_TYPES)
    glossary = explain.error_glossary()
    assert all(f"{t} = {explain.ERROR_TYPE_NAMES[t]}" in glossary for t in ERROR_TYPES)
    assert explain.error_label("Loc") == "Loc (poor mask)"


def test_nothing_kept_names_the_filter_and_the_best_thresholds():
    t = Thresholds("ddtf", c_t=0.99, m_t=0.95)
    best = {"c_t": 0.55, "m_t": 0.6, "kept": 12, "f1": 0.41}
    text = explain.nothing_kept(t, 1000, best)
    assert text.startswith("The run's DDTF (c >= 0.99 and m >= 0.95) kept no pseudo-label at iteration 1,000")
    assert "showing all queries instead" in text and "c_t = 0.55 and m_t = 0.60 (12 kept, F1 0.41)" in text
    # no threshold keeps a correct pseudo-label: no best thresholds to offer
    assert "try" not in explain.nothing_kept(t, 5, dict(best, f1=0.0))
    coupled = explain.nothing_kept(Thresholds("coupled", s_t=0.9), 5, {"s_t": 0.4, "kept": 3, "f1": 0.2})
    assert "the coupled filter (s >= 0.90)" in coupled and "s_t = 0.40" in coupled


def test_dicc_reason_tells_off_from_nothing_to_correct():
    assert "DICC was off in this run" in explain.dicc_reason(False, kept=10)
    assert "kept none" in explain.dicc_reason(True, kept=0)
    assert "burn-in" in explain.dicc_reason(True, kept=3, phase="burn_in")
