"""What would DICC do to a run's recorded pseudo-labels with each crop mode? Fixed vs broken classes.

    .venv/bin/python benchmarks/bench_dicc_records.py RUN_DIR [--iteration N] [--w 0.5]
        [--clip-model weights/upstream-clip.json] [--clip-weights weights/upstream-clip.pt] [--out FILE]

For every pseudo-label the run's filter kept in its records (unlabeled training images whose
annotations are held back for analysis), the image and the recorded mask are brought to the
detector's scale, CLIP classifies the crop in each mode of ``pldc.dicc_crop`` (``box``: the whole
mask's box, the paper; ``component``: its largest connected part), and Eq. 9 fuses it with the
teacher's distribution at weight ``w`` (default: the one recorded). The records keep the teacher's
top-5 classes only, so ``p_hat`` is those five renormalised (the other classes get 0).
A pseudo-label is judged when it overlaps a GT at IoU > 0.5 (the error types' rule): ``fixed``
= teacher wrong, DICC right; ``broken`` = teacher right, DICC wrong. The first line checks the
replay: how often box mode here agrees with the class DICC chose during training.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report_text import emit, machine_line  # noqa: E402

from pldc_core.method.dicc import ClipClassifier  # noqa: E402
from pldc_core.method.pseudo_labels import dicc_fuse  # noqa: E402
from pldc_core.pretraining.clip import at_detector_scale  # noqa: E402
from pldc_core.records.errors import IOU_MATCH  # noqa: E402
from pldc_core.records.store import list_record_iterations, load_records  # noqa: E402
from workbench.thresholds import select_kept  # noqa: E402

MODES = ("box", "component")
DEFAULT_CLIP_MODEL, DEFAULT_CLIP_WEIGHTS = "weights/upstream-clip.json", "weights/upstream-clip.pt"


def _image(records, image_id: int) -> torch.Tensor:
    from PIL import Image

    row = records.images.loc[records.images["image_id"] == image_id].iloc[0]
    path = Path(records.manifest["image_root"]) / row["file_name"]
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255


@torch.no_grad()
def replay(records, clip: ClipClassifier, image_size: int, w: float | None) -> dict[str, np.ndarray]:
    """Per kept row: the teacher's class, GT class (-1 if unjudged), training's DICC class, each mode's,
    and CLIP alone on the component crop of the row's own mask (``clip_own``) and of the GT mask it
    matches (``clip_gt``, -1 if unjudged), with the row's IoU."""
    rows = select_kept(records.queries, records.manifest["thresholds"]["filter"])
    n = clip.text_embeddings.shape[0]
    gt_masks = records.gt.set_index("gt_id")["mask_rle"]
    out = {k: [] for k in ("teacher", "gt", "trained", *MODES, "clip_own", "clip_gt", "iou")}
    for image_id, group in rows.groupby("image_id", sort=True):
        image = _image(records, int(image_id))
        masks = torch.from_numpy(np.stack([
            mask_utils.decode({"size": [int(r.height), int(r.width)], "counts": r.mask_rle}) for r in group.itertuples()
        ]).astype(bool))
        judged = group["iou"].to_numpy(np.float64) > IOU_MATCH
        matched = torch.from_numpy(np.stack([
            mask_utils.decode({"size": [int(r.height), int(r.width)], "counts": gt_masks.loc[int(r.gt_id)]})
            if ok else np.zeros((int(r.height), int(r.width)), np.uint8)
            for r, ok in zip(group.itertuples(), judged)]).astype(bool))
        _, matched = at_detector_scale(image, matched, image_size)
        image, masks = at_detector_scale(image, masks, image_size)
        p_hat = torch.zeros(len(group), n)
        for k, r in enumerate(group.itertuples()):
            p_hat[k, np.asarray(r.top5_classes, dtype=np.int64)] = torch.as_tensor(np.asarray(r.top5_probs), dtype=torch.float32)
        p_hat = p_hat / p_hat.sum(1, keepdim=True).clamp_min(1e-12)
        weight = w if w is not None else float(group["dicc_w"].iloc[0])
        probs = {}
        for mode in MODES:
            clip.crop_mode = mode
            probs[mode] = clip.probs(image, masks)
            out[mode].append(dicc_fuse(p_hat, probs[mode], weight)[1].numpy())
        out["clip_own"].append(probs["component"].argmax(1).numpy())
        clip.crop_mode = "component"
        clip_gt = np.full(len(group), -1, np.int64)
        clip_gt[judged] = clip.probs(image, matched[torch.from_numpy(judged)]).argmax(1).numpy()
        out["clip_gt"].append(clip_gt)
        out["iou"].append(group["iou"].fillna(0).to_numpy(np.float64))
        out["gt"].append(np.where(judged, group["gt_class"].fillna(-1).to_numpy(), -1).astype(np.int64))
        out["teacher"].append(group["pred_class"].to_numpy(np.int64))
        out["trained"].append(group["corrected_class"].to_numpy(np.int64))
    return {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in out.items()}


def _accuracy(right: np.ndarray, where: np.ndarray) -> str:
    return f"{100 * right[where].mean():.1f}% ({int(where.sum())})" if where.any() else "- (0)"


def clip_alone_lines(r: dict[str, np.ndarray], good_iou: float = 0.8) -> list[str]:
    """How well CLIP alone names the judged rows from the teacher's own mask and from the matched GT
    mask, next to the teacher, for masks at IoU >= ``good_iou`` and below: does CLIP's
    accuracy depend on how well the teacher drew the mask?"""
    judged = r["gt"] >= 0
    good, poor = judged & (r["iou"] >= good_iou), judged & (r["iou"] < good_iou)
    lines = ["CLIP alone (w = 1, component crop) on the judged rows, class accuracy (rows):",
             f"| classified by | all judged | mask IoU >= {good_iou} | mask IoU < {good_iou} |", "|---|---|---|---|"]
    for name, key in (("the teacher", "teacher"), ("CLIP, the teacher's mask", "clip_own"),
                      ("CLIP, the matched GT mask", "clip_gt")):
        right = r[key] == r["gt"]
        lines.append(f"| {name} | {_accuracy(right, judged)} | {_accuracy(right, good)} | {_accuracy(right, poor)} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--iteration", type=int, default=None, help="records iteration (default: the last)")
    ap.add_argument("--w", type=float, default=None, help="Eq. 8's w (default: the recorded one)")
    ap.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL)
    ap.add_argument("--clip-weights", default=DEFAULT_CLIP_WEIGHTS)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    iterations = list_record_iterations(args.run_dir)
    if not iterations:
        print(f"{args.run_dir}: no pseudo-label records", file=sys.stderr)
        return 1
    iteration = args.iteration if args.iteration is not None else iterations[-1]
    records = load_records(args.run_dir, iteration)
    names = [c["name"] for c in records.manifest["categories"]]
    clip = ClipClassifier.load(args.clip_model, pretrained=args.clip_weights)
    clip.set_categories(names)
    start = time.perf_counter()
    r = replay(records, clip, args.image_size, args.w)
    judged = r["gt"] >= 0
    lines = [f"# DICC replayed on the kept pseudo-labels of {args.run_dir} @ {iteration}",
             f"command: .venv/bin/python benchmarks/bench_dicc_records.py {args.run_dir} --iteration {iteration}"
             + (f" --w {args.w}" if args.w is not None else "")
             + (f" --clip-model {args.clip_model} --clip-weights {args.clip_weights}"
                if (args.clip_model, args.clip_weights) != (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_WEIGHTS) else ""),
             machine_line(time.perf_counter() - start),
             f"{len(r['teacher'])} kept pseudo-labels, {int(judged.sum())} judged (IoU > {IOU_MATCH} with a GT); "
             f"replay check: box mode here = training's DICC class for "
             f"{100 * (r['box'] == r['trained']).mean():.1f}% of them (rows with DICC off excluded: "
             f"{int((r['trained'] < 0).sum())})",
             "| crop mode | changed | fixed | broken | class accuracy of judged (teacher -> after DICC) |",
             "|---|---|---|---|---|"]
    teacher_right = r["teacher"] == r["gt"]
    for mode in MODES:
        after_right = r[mode] == r["gt"]
        changed = int((r[mode] != r["teacher"]).sum())
        fixed = int((judged & ~teacher_right & after_right).sum())
        broken = int((judged & teacher_right & ~after_right).sum())
        lines.append(f"| {mode} | {changed} | {fixed} | {broken} | "
                     f"{100 * teacher_right[judged].mean():.1f}% -> {100 * after_right[judged].mean():.1f}% |")
    emit(lines + clip_alone_lines(r), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
