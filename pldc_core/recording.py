"""Run a teacher over a fixed sample of unlabeled images and record every query (see record_schema.py).

Ground truth of unlabeled images is read here, and only here, for analysis; the training loader
never sees it.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import distributed as dist_utils
from .inference import predict_images
from .records import DiccInfo, GroundTruth, RecordWriter, build_gt_table, build_image_row, build_query_table


def sample_record_images(image_ids: list[int], n: int, seed: int) -> list[int]:
    """The fixed, seeded sample of images recorded at every checkpoint (sorted ids)."""
    ids = sorted(image_ids)
    if n >= len(ids):
        return ids
    return sorted(random.Random(seed).sample(ids, n))


def _dicc_info(clip, image: torch.Tensor, mask_logits: torch.Tensor, class_logits: torch.Tensor, thresholds: dict,
               w: float) -> DiccInfo | None:
    """DICC on the queries the run's filter keeps, as training does."""
    from .pseudo_labels import (class_quality, coupled_keep, dicc_fuse, ddtf_keep, mask_quality,
                                teacher_class_probs)

    c, _ = class_quality(class_logits)
    m = mask_quality(mask_logits)
    if thresholds["filter"] == "ddtf":
        keep = ddtf_keep(c, m, thresholds["c_t"], thresholds["m_t"])
    else:
        keep = coupled_keep(c, m, thresholds["s_t"])
    idx = torch.nonzero(keep).flatten()
    if len(idx) == 0:
        return None
    full = F.interpolate(mask_logits[idx][None], size=image.shape[-2:], mode="bilinear")[0] > 0
    clip_probs = clip.probs(image, full).cpu()
    _, corrected = dicc_fuse(teacher_class_probs(class_logits[idx]), clip_probs, w)
    return DiccInfo(clip_probs=clip_probs, w=w, corrected_classes=corrected, query_indices=idx)


@torch.no_grad()
def record_pseudo_labels(model: torch.nn.Module, index, image_ids: list[int], *, run_dir: str | Path,
                         iteration: int, manifest: dict, thresholds: dict, image_size: int, device: torch.device,
                         clip=None, dicc_w: float | None = None, batch_size: int = 8) -> Path | None:
    """Record ``model``'s queries on ``image_ids``; sharded over ranks, written by rank 0.

    ``manifest`` carries run, phase, config_hash, dataset (the rest is filled in here).
    Returns the records folder on rank 0, None elsewhere.
    """
    categories = index.categories
    supercategory = categories.supercategory_of_index()
    has_gt = any(index.annotations(i) for i in image_ids)
    mine = list(image_ids)[dist_utils.rank()::dist_utils.world_size()]
    queries, gts, images_rows = [], [], []
    bar = tqdm(total=len(mine), desc=f"records @{iteration}", leave=False,
               disable=os.environ.get("PLDC_NO_PROGRESS") == "1" or not dist_utils.is_main())
    for start in range(0, len(mine), batch_size):
        ids = mine[start:start + batch_size]
        batch = [index.load_image(i) for i in ids]
        for image_id, image, pred in zip(ids, batch, predict_images(model, batch, image_size, device)):
            hw = tuple(image.shape[-2:])
            low = pred.low_res()
            gt = None
            if has_gt:
                gt = GroundTruth.from_rles(*index.instance_rles(image_id))
            dicc = None
            if clip is not None:
                dicc = _dicc_info(clip, image.to(device), low.to(device), pred.class_logits.to(device), thresholds,
                                  dicc_w)
            queries.append(build_query_table(image_id, pred.class_logits, low, hw, thresholds=thresholds, gt=gt,
                                             supercategory=supercategory, dicc=dicc))
            gts.append(build_gt_table(image_id, gt, hw))
            images_rows.append(build_image_row(image_id, index.image_info(image_id)["file_name"], hw,
                                               has_gt=has_gt))
        bar.update(len(ids))
    bar.close()
    parts = dist_utils.all_gather_objects((queries, gts, images_rows))
    if not dist_utils.is_main():
        return None
    full_manifest = {
        **manifest, "iteration": int(iteration), "image_root": str(Path(index.image_root).resolve()),
        "categories": categories.to_coco(), "thresholds": dict(thresholds),
        "dicc": {"enabled": clip is not None, "w": dicc_w if clip is not None else None},
    }
    with RecordWriter(run_dir, iteration, full_manifest) as writer:
        for q_part, g_part, i_part in parts:
            for q, g, im in zip(q_part, g_part, i_part):
                writer.add(q, g, im)
    return writer.path


def record_checkpoint(trainer) -> Path | None:
    """The trainer's records hook: its teacher (the student during burn-in) on the record sample."""
    from .model import unwrap
    from .pseudo_labels import dicc_weight

    cfg = trainer.cfg
    model = trainer.teacher if trainer.teacher is not None else unwrap(trainer.student)
    ids = sample_record_images(trainer.data.unlabeled_ids, cfg.records.num_images, cfg.records.seed)
    p = cfg.pldc
    w = None
    if trainer.clip is not None:
        w = dicc_weight(max(0, trainer.iter - cfg.train.burn_in_iters),
                        max(1, cfg.train.max_iters - cfg.train.burn_in_iters))
    manifest = {"run": cfg.name, "phase": trainer.phase, "config_hash": cfg.hash(), "dataset": cfg.data.dataset}
    thresholds = {"filter": p.filter, "c_t": p.c_t, "m_t": p.m_t, "s_t": p.s_t}
    return record_pseudo_labels(model, trainer.data.train_index, ids, run_dir=trainer.run_dir,
                                iteration=trainer.iter, manifest=manifest, thresholds=thresholds,
                                image_size=cfg.data.image_size, device=trainer.device, clip=trainer.clip,
                                dicc_w=w)
