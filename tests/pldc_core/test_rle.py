import numpy as np

from pldc_core.rle import decode_rle, encode_masks, mask_iou_matrix, rle_area_bbox, rle_run_lengths, rle_strings


def test_encode_decode_area_box_and_iou_agree():
    masks = np.zeros((2, 6, 5), dtype=bool)
    masks[0, 1:4, 1:3] = True
    masks[1, 2:6, 1:3] = True
    rles = encode_masks(masks)
    assert all(isinstance(r["counts"], str) for r in rles)
    for rle, mask in zip(rles, masks):
        assert np.array_equal(decode_rle(rle["counts"], *rle["size"]), mask)
    area, bbox = rle_area_bbox(rles)
    assert area.tolist() == [6, 8] and bbox.tolist() == [[1, 1, 2, 3], [1, 2, 2, 4]]
    # overlap rows 2-3 (4 px), union 10 px
    assert mask_iou_matrix(rles, masks[1:]).tolist() == [[0.4], [1.0]]


def test_run_lengths_of_many_strings_at_once_match_pycocotools():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 13, 17)) > 0.6
    masks[2] = False  # an empty mask: one run
    rles = encode_masks(masks)
    counts, runs = rle_run_lengths([r["counts"] for r in rles])
    assert runs.sum() == len(counts)
    start = 0
    for mask, n in zip(masks, runs):
        values = np.repeat(np.arange(n) % 2, counts[start:start + n]).astype(bool)  # runs alternate 0, 1, 0, ...
        assert np.array_equal(values.reshape(17, 13).T, mask)  # column-major, as COCO stores it
        start += n


def test_rle_strings_match_pycocotools_and_invert_run_lengths():
    rng = np.random.default_rng(1)
    masks = rng.random((6, 31, 9)) > 0.5
    masks[1] = False                      # one run of zeros
    masks[2] = True                       # a zero-length first run, then ones to the end
    masks[3, :, :4] = True                # long runs: multi-chunk numbers and negative differences
    masks[4, 30, 8] = True                # the last pixel only
    rles = encode_masks(masks)
    counts, runs = rle_run_lengths([r["counts"] for r in rles])
    assert rle_strings(counts, runs) == [r["counts"] for r in rles]
    big = np.zeros((1, 900, 700), dtype=bool)
    big[0, 5:800, 3:600] = True           # counts past 2^15 and differences of both signs
    (rle,) = encode_masks(big)
    assert rle_strings(*rle_run_lengths([rle["counts"]])) == [rle["counts"]]
    assert rle_strings(np.zeros(0), np.zeros(2, dtype=np.int64)) == ["", ""]
