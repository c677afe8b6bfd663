import numpy as np
import pandas as pd
import pytest

from tests.workbench.figures.png_check import png_ok as _png_ok
from workbench import png
from workbench.figures import dicc as figures


def test_dicc_class_bars(tmp_path):
    per_class = pd.DataFrame({"from_class": [0, 1], "changed_from": [3, 0], "fixed": [1, 0], "broken": [1, 0],
                              "neutral": [1, 0], "unjudged": [0, 0], "changed_unjudged": [0, 0]})
    bars = figures.dicc_class_bars(per_class, ["cat", "dog"])
    assert list(bars.data[0].x) == ["cat"] and bars.layout.barmode == "stack"
    assert _png_ok(png.write_png(bars, tmp_path / "bars.png"))


def test_clip_bars_say_why_a_bar_is_missing(tmp_path):
    per_class = pd.DataFrame({"class": [0, 1, 2], "support": [3, 0, 2], "predicted": [4, 1, 0],
                              "tp": [2, 0, 0], "precision": [0.5, 0.0, np.nan], "recall": [2 / 3, np.nan, 0.0]})
    clip = figures.clip_pr_bars(per_class, ["cat", "dog", "horse"])
    assert list(clip.data[0].x) == ["cat", "dog<br><i>no bar: no GT crop</i>",
                                    "horse<br><i>no bar: never predicted</i>"]
    assert _png_ok(png.write_png(clip, tmp_path / "clip.png"))
    # one mode: the same bars; several: precision and recall panels with a bar per mode
    assert figures.clip_pr_by_mode({"crop": per_class}, ["cat", "dog", "horse"]).to_dict() == clip.to_dict()
    modes = figures.clip_pr_by_mode({"box": per_class, "mask_pool": per_class.assign(precision=0.25)},
                                    ["cat", "dog", "horse"])
    assert [(t.name, t.xaxis) for t in modes.data] == [("box", "x"), ("box", "x2"), ("mask_pool", "x"),
                                                       ("mask_pool", "x2")]
    assert list(modes.data[2].y) == [0.25] * 3 and list(modes.data[3].y) == pytest.approx([2 / 3, np.nan, 0.0],
                                                                                        nan_ok=True)
    assert [t.showlegend for t in modes.data] == [True, False, True, False]
    assert _png_ok(png.write_png(modes, tmp_path / "clip_modes.png"))


def test_dicc_trend_fixed_broken_and_net(tmp_path):
    dicc = pd.DataFrame({"iteration": [1000, 500], "n_ran": [10, 8], "fixed": [3, 2], "broken": [1, 1],
                         "neutral": [0, 1], "net": [2, 1]})
    fig = figures.dicc_trend(dicc)
    assert [t.name for t in fig.data] == ["fixed", "broken", "neutral", "net (fixed - broken)"]
    assert list(fig.data[0].x) == [500, 1000] and list(fig.data[3].y) == [1, 2]
    assert fig.layout.yaxis.title.text == "pseudo-labels" and fig.layout.xaxis.title.text == "iteration"
    assert fig.layout.title.subtitle.text == "the pseudo-labels kept by the run"
    assert figures.dicc_trend(dicc, kept_only=False).layout.title.subtitle.text == "all queries"
    assert "DICC was off" in figures.dicc_trend(dicc.assign(n_ran=0), empty_message="DICC was off in this run"
                                                ).layout.annotations[0].text
    assert _png_ok(png.write_png(fig, tmp_path / "dicc_trend.png"))


def test_class_probability_bars():
    frame = pd.DataFrame({"class": [1, 0], "teacher": [0.7, 0.2], "clip": [0.1, 0.8], "fused": [0.4, 0.5]})
    fig = figures.class_probability_bars(frame, ["cat", "dog"], "teacher: dog")
    assert [t.name for t in fig.data] == ["teacher", "CLIP", "fused (Eq. 9)"] and list(fig.data[0].y) == ["dog", "cat"]
    assert fig.layout.xaxis.title.text == "probability (0 to 1)"
    nothing = figures.class_probability_bars(frame.iloc[:0], [], "t")
    assert "no class probabilities" in nothing.layout.annotations[0].text
