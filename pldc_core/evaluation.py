"""COCO mask AP of Mask2Former's instance inference, via pycocotools.

Flow: ``instance_inference`` turns one image's query outputs into scored binary masks,
``predictions_to_coco`` writes them as COCO result dicts (``image_results`` does both, for
evaluation and for ``pldc predict``), ``coco_mask_ap`` runs
``COCOeval(iouType="segm")``. ``CocoEvaluator`` strings these together over a dataset and
gathers the results of every ``torch.distributed`` rank.

Metrics are in percent. A metric COCO cannot define (no ground truth in that size bucket, or
no ground truth at all; pycocotools reports -1) is returned as ``NaN``, never as -100.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pldc_core import distributed
from pldc_core.method.pseudo_labels import mask_quality
from pldc_core.structures import Categories

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def instance_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor,
                       top_k: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask2Former's instance inference for one image.

    ``class_logits [Q, N+1]`` (last = no-object), ``mask_logits [Q, H, W]`` already at the
    image's resolution. The ``top_k`` best (query, class) pairs by class probability (softmax
    over N+1, no-object dropped) are kept, so one query may appear with several classes.
    Each gets ``score = class prob * mask quality`` (docs/METHOD.md Eq. 3-4) and the mask
    ``sigma(q) > 0.5``. Returns ``scores [k]``, ``labels [k]`` (int64, contiguous),
    ``masks [k, H, W]`` (bool), ``k = min(top_k, Q * N)``, ordered by descending score.
    """
    if (class_logits.dim() != 2 or mask_logits.dim() != 3 or class_logits.shape[0] != mask_logits.shape[0]
            or class_logits.shape[1] < 2):
        raise ValueError(f"expected class_logits [Q, N+1] (N >= 1) and mask_logits [Q, H, W], got "
                         f"{tuple(class_logits.shape)} and {tuple(mask_logits.shape)}")
    num_classes = class_logits.shape[1] - 1
    probs = class_logits.float().softmax(-1)[:, :num_classes]
    class_scores, flat_index = probs.flatten().topk(min(top_k, probs.numel()))
    labels = flat_index % num_classes
    # A query chosen with several classes shares one mask: work on each distinct query once.
    queries, which = (flat_index // num_classes).unique(return_inverse=True)
    chosen = mask_logits[queries].float()
    scores = class_scores * mask_quality(chosen)[which]
    order = scores.argsort(descending=True, stable=True)
    return scores[order], labels[order], (chosen.sigmoid() > 0.5)[which[order]]


def predictions_to_coco(image_id: int, scores: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                        categories: Categories) -> list[dict]:
    """COCO result dicts (compressed RLE with str counts, bbox, area, score) for one image."""
    if not (len(scores) == len(labels) == len(masks)):
        raise ValueError(f"image {image_id}: {len(scores)} scores, {len(labels)} labels, {len(masks)} masks")
    if len(scores) == 0:
        return []
    label_list = labels.tolist()
    bad = [lab for lab in label_list if not 0 <= lab < len(categories)]
    if bad:
        raise ValueError(f"image {image_id}: class index {bad[0]} outside 0..{len(categories) - 1}")
    # pycocotools wants a Fortran-ordered uint8 [H, W, K] array.
    rles = mask_utils.encode(np.asfortranarray(masks.detach().cpu().numpy().transpose(1, 2, 0).astype(np.uint8)))
    areas = mask_utils.area(rles)
    boxes = mask_utils.toBbox(rles)
    ids = categories.ids
    results = []
    for rle, area, box, lab, score in zip(rles, areas, boxes, label_list, scores.tolist()):
        results.append({
            "image_id": int(image_id),
            "category_id": ids[lab],
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("utf-8")},
            "score": float(score),
            "bbox": [float(v) for v in box],
            "area": int(area),
        })
    return results


def image_results(image_id: int, class_logits: torch.Tensor, mask_logits: torch.Tensor, categories: Categories,
                  top_k: int = 100) -> list[dict]:
    """COCO result dicts of one image's query outputs (``mask_logits`` at the image's size), best first:
    ``instance_inference`` then ``predictions_to_coco``. What evaluation scores and ``pldc predict`` writes."""
    with torch.no_grad():
        scores, labels, masks = instance_inference(class_logits, mask_logits, top_k)
    return predictions_to_coco(image_id, scores, labels, masks, categories)


def load_coco_gt(gt: str | os.PathLike | dict | COCO) -> COCO:
    """A pycocotools ``COCO`` from a json path, a loaded dict or an existing ``COCO`` (quietly)."""
    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, (str, os.PathLike)):
        path = Path(gt)
        try:
            dataset = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read COCO ground truth ({exc})") from exc
        source = str(path)
    else:
        dataset = copy.deepcopy(gt)
        source = "ground-truth dict"
    for key in ("images", "annotations", "categories"):
        if key not in dataset:
            raise ValueError(f"{source}: COCO ground truth has no '{key}' list")
    image_ids = {img["id"] for img in dataset["images"]}
    for ann in dataset["annotations"]:
        if "segmentation" not in ann or "category_id" not in ann or ann.get("image_id") not in image_ids:
            raise ValueError(f"{source}: annotation {ann.get('id')} lacks a segmentation or category_id, "
                             f"or its image_id {ann.get('image_id')} is not among the images")
        ann.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    for ann in dataset["annotations"]:
        if "area" not in ann:
            ann["area"] = float(mask_utils.area(coco.annToRLE(ann)))
    return coco


def _empty_results(gt: COCO) -> COCO:
    res = COCO()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                   "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def coco_mask_ap(gt: str | os.PathLike | dict | COCO, results: list[dict], image_ids: Iterable[int] | None = None,
                 area_scale: float | None = None, verbose: bool = False, per_class: bool = False) -> dict:
    """Mask AP, AP50, AP75, APs, APm, APl (percent) of ``results`` against ``gt``.

    ``image_ids`` restricts the evaluation to those images (default: every GT image).
    ``area_scale`` multiplies COCO's small/medium/large area limits (32^2 and 96^2 pixels),
    which are meant for COCO-sized images (about 640 x 480). For much smaller images, e.g.
    the embedded benchmark's 128-256 px, pass ``H * W / structures.COCO_REFERENCE_AREA`` of
    a typical image so that the buckets match ``structures.size_category``. The bucket of a
    ground truth comes from its ``area`` field, that of a detection from its mask area.
    Metrics COCO leaves undefined are ``NaN``. Empty ``results`` give AP 0.
    ``per_class``: also ``"AP_per_class"``, ``{category name: AP}`` in percent over every area
    (COCO's mask AP is the mean of these over the categories with ground truth; ``NaN`` for a
    category without any).
    """
    coco_gt = load_coco_gt(gt)
    known = set(coco_gt.getImgIds())
    if image_ids is None:
        image_ids = sorted(known)
    else:
        image_ids = sorted({int(i) for i in image_ids})
        unknown = [i for i in image_ids if i not in known]
        if unknown:
            raise ValueError(f"image ids not in the ground truth: {unknown[:10]}")
    unknown = sorted({r["image_id"] for r in results} - known)
    if unknown:
        raise ValueError(f"results refer to image ids not in the ground truth: {unknown[:10]}")
    if area_scale is not None and not area_scale > 0:
        raise ValueError(f"area_scale must be > 0, got {area_scale}")
    if not image_ids:
        empty = {name: math.nan for name in METRICS}
        if per_class:
            empty["AP_per_class"] = {c["name"]: math.nan for c in coco_gt.dataset["categories"]}
        return empty

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if results:
            # Without a bbox, loadRes takes the detection's mask area (not its box area) for
            # the size buckets, as detectron2 does for mask AP. Copies: loadRes edits them.
            coco_dt = coco_gt.loadRes([{k: v for k, v in r.items() if k != "bbox"} for r in results])
        else:
            coco_dt = _empty_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.params.imgIds = image_ids
        if area_scale is not None:
            small, medium = 32 ** 2 * area_scale, 96 ** 2 * area_scale
            evaluator.params.areaRng = [[0, 1e5 ** 2], [0, small], [small, medium], [medium, 1e5 ** 2]]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(out.getvalue(), end="")
    # stats[0:6] are AP, AP50, AP75, APs, APm, APl; pycocotools writes -1 where undefined.
    metrics: dict = {name: float(v) * 100 if v >= 0 else math.nan for name, v in zip(METRICS, evaluator.stats[:6])}
    if per_class:
        metrics["AP_per_class"] = _ap_per_class(evaluator, coco_gt)
    return metrics


def _ap_per_class(evaluator: COCOeval, coco_gt: COCO) -> dict[str, float]:
    """``{category name: AP %}`` from an accumulated COCOeval: precision averaged over IoU thresholds
    and recall points, for all areas and the largest detection count, as ``stats[0]`` averages it."""
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    # eval["precision"]: [IoU thresholds, recall points, categories, area ranges, max detections]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        defined = precision[:, :, k][precision[:, :, k] > -1]
        out[names[cat_id]] = float(defined.mean()) * 100 if defined.size else math.nan
    return out


class CocoEvaluator:
    """Collects per-image predictions and computes COCO mask AP, across ranks when distributed.

    ``gather`` and ``compute`` are collective: every rank must call them. Images evaluated on
    several ranks (samplers pad the last batch by repeating images) count once.
    """

    def __init__(self, gt: str | os.PathLike | dict | COCO, categories: Categories | None = None,
                 top_k: int = 100, area_scale: float | None = None):
        self.gt = load_coco_gt(gt)
        self.categories = categories or Categories.from_coco(self.gt.dataset["categories"])
        self.top_k = top_k
        self.area_scale = area_scale
        self.reset()

    def reset(self) -> None:
        self._predictions: dict[int, list[dict]] = {}

    def add(self, image_id: int, class_logits: torch.Tensor, mask_logits: torch.Tensor) -> None:
        """Add one image: ``class_logits [Q, N+1]``, ``mask_logits [Q, H, W]`` at the image's size."""
        image_id = int(image_id)
        if image_id in self._predictions:
            raise ValueError(f"image {image_id} was already added to this evaluator")
        self._predictions[image_id] = image_results(image_id, class_logits, mask_logits, self.categories, self.top_k)

    def gather(self) -> dict[int, list[dict]]:
        """Every rank's predictions by image id (the lowest rank wins for a repeated image)."""
        merged: dict[int, list[dict]] = {}
        for part in distributed.all_gather_objects(self._predictions):
            for image_id, preds in part.items():
                merged.setdefault(image_id, preds)
        return merged

    def compute(self, verbose: bool = False, predictions_out: str | os.PathLike | None = None,
                per_class: bool = False) -> dict:
        """Mask AP over the images added on any rank; the metrics on rank 0, ``{}`` elsewhere.

        With no image added on any rank every metric is ``NaN``. ``predictions_out``: rank 0 also
        writes the COCO results (a JSON list of image_id, category_id, segmentation RLE, score,
        bbox, area), which pycocotools' ``loadRes`` reads.
        """
        merged = self.gather()
        if not distributed.is_main():
            return {}
        results = [r for image_id in sorted(merged) for r in merged[image_id]]
        if predictions_out is not None:
            from pldc_core.atomic import write_json

            write_json(predictions_out, results)
        return coco_mask_ap(self.gt, results, image_ids=merged.keys(), area_scale=self.area_scale,
                            verbose=verbose, per_class=per_class)
