"""The DICC replay benchmark's CLIP-alone table: accuracies split by how well the teacher drew the mask."""
import numpy as np

from benchmarks.bench_dicc_records import clip_alone_lines


def test_clip_alone_lines_split_judged_rows_by_mask_iou():
    r = {"gt": np.array([0, 1, 2, 0, -1]),
         "teacher": np.array([0, 1, 0, 1, 2]),
         "clip_own": np.array([0, 1, 1, 1, 2]),
         "clip_gt": np.array([0, 1, 2, 0, -1]),
         "iou": np.array([0.9, 0.85, 0.6, 0.55, 0.3])}
    lines = clip_alone_lines(r, good_iou=0.8)
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert rows["the teacher"] == "| the teacher | 50.0% (4) | 100.0% (2) | 0.0% (2) |"
    assert rows["CLIP, the teacher's mask"] == "| CLIP, the teacher's mask | 50.0% (4) | 100.0% (2) | 0.0% (2) |"
    assert rows["CLIP, the matched GT mask"] == "| CLIP, the matched GT mask | 100.0% (4) | 100.0% (2) | 100.0% (2) |"
    # the unjudged row (gt -1) counts nowhere; no judged rows at all: dashes, not a crash
    none = clip_alone_lines({k: v[4:] for k, v in r.items()})
    assert "| the teacher | - (0) | - (0) | - (0) |" in none
