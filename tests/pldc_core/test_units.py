import math

from pldc_core.units import format_ap, format_metrics


def test_ap_carries_its_percent_unit():
    assert format_ap(0.2234) == "0.22%"
    assert format_ap(23.26, digits=1) == "23.3%"
    assert format_ap(float("nan")) == "n/a"
    assert format_ap(None) == "n/a"


def test_metrics_line_keeps_order_and_skips_missing():
    line = format_metrics({"AP50": 30.0, "AP": 12.345, "iteration": 7, "APs": math.nan})
    assert line == "AP 12.35% · AP50 30.00% · APs n/a"
