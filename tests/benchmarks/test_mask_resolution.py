"""The mask-resolution ceiling: what a head at stride s can draw of an object."""
import torch

from benchmarks.bench_mask_resolution import best_low_resolution_iou


def test_cell_aligned_objects_are_drawn_exactly_and_small_ones_are_not():
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 8:24, 8:24] = True      # 16 px square on 4 px cells: all but its corners at stride 4
    masks[1, 9:12, 9:12] = True      # 3 px square inside one cell: a blob at stride 4
    masks[2, 1:31, 2:4] = True       # a 2 px wide bar: at stride 8 it is a quarter of a cell wide
    iou2, iou4, iou8 = (best_low_resolution_iou(masks, s) for s in (2, 4, 8))
    assert iou4[0] > 0.95 and torch.allclose(iou2[0], torch.tensor(1.0))
    assert iou4[1] < 0.5 < iou2[1]
    assert iou8[2] <= iou4[2] < 0.5 < iou2[2]
    assert ((iou2 >= 0) & (iou2 <= 1)).all()
