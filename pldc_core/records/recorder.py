"""Run a teacher over a fixed sample of unlabeled images and record every query (see records/schema.py).

Ground truth of unlabeled images is read here, and only here, for analysis; the training loader
never sees it.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pyarrow as pa
import torch
from tqdm import tqdm

from pldc_core import distributed as dist_utils
from pldc_core.data.augment import TestResize
from pldc_core.method.filters import Thresholds
from pldc_core.method.teacher_step import PseudoLabels, dicc_w_at, teacher_step
from pldc_core.model.inference import ImagePrediction
from pldc_core.records.rows import (DiccInfo, GroundTruth, gt_columns, gt_table, image_columns, images_table,
                                    queries_table, query_columns)
from pldc_core.records.store import RecordWriter


def sample_record_images(image_ids: list[int], n: int, seed: int) -> list[int]:
    """The fixed, seeded sample of images recorded at every checkpoint (sorted ids)."""
    ids = sorted(image_ids)
    if n >= len(ids):
        return ids
    return sorted(random.Random(seed).sample(ids, n))


def _dicc_info(labels: PseudoLabels, w: float) -> DiccInfo | None:
    """What DICC decided for the queries the run's filter keeps (None without DICC)."""
    if labels.clip_probs is None:
        return None
    return DiccInfo(clip_probs=labels.clip_probs.cpu(), w=w, corrected_classes=labels.labels.cpu(),
                    query_indices=labels.kept.keep_idx.cpu())


@torch.no_grad()
def record_batch(model: torch.nn.Module, index, image_ids: list[int], *, thresholds: dict, image_size: int,
                 device: torch.device, has_gt: bool, clip=None, dicc_w: float | None = None,
                 teacher_flip: bool = False) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Load one batch of images, run training's teacher step on it (``model`` as the teacher, the
    images resized as for evaluation) and build its records: ``(queries, gt, images)``.

    ``has_gt``: read the images' annotations (False: the GT columns stay empty). ``teacher_flip``:
    the teacher also labels the mirrored images (``pldc.teacher_flip``). The rows of the
    whole batch are converted to arrow at once, not per image.
    """
    supercategory = index.categories.supercategory_of_index()
    batch = [index.load_image(i) for i in image_ids]
    canvas, sizes, padded = TestResize("train", image_size)(batch)
    was_training = model.training
    model.eval()
    try:
        step = teacher_step(model, canvas.to(device), image_hw=sizes, thresholds=Thresholds.of(thresholds),
                            clip=clip, w=dicc_w, flip=teacher_flip)
    finally:
        model.train(was_training)
    q_parts, g_parts, i_parts = [], [], []
    for i, (image_id, image) in enumerate(zip(image_ids, batch)):
        hw = tuple(image.shape[-2:])
        pred = ImagePrediction(step.class_logits[i].cpu(), step.mask_logits[i].cpu(), sizes[i], padded[0])
        gt = GroundTruth.from_rles(*index.instance_rles(image_id)) if has_gt else None
        dicc = _dicc_info(step.pseudo_labels[i], dicc_w) if clip is not None else None
        q_parts.append(query_columns(image_id, pred.class_logits, pred.low_res(), hw, thresholds=thresholds, gt=gt,
                                     supercategory=supercategory, dicc=dicc))
        g_parts.append(gt_columns(image_id, gt, hw))
        i_parts.append(image_columns(image_id, index.image_info(image_id)["file_name"], hw, has_gt=has_gt))
    return queries_table(q_parts), gt_table(g_parts), images_table(i_parts)


def records_manifest(manifest: dict, index, iteration: int, thresholds: dict, *, dicc_enabled: bool,
                     dicc_w: float | None, teacher_flip: bool = False) -> dict:
    """``manifest`` (run, phase, config_hash, dataset) completed with what the recording knows."""
    return {
        **manifest, "iteration": int(iteration), "image_root": str(Path(index.image_root).resolve()),
        "categories": index.categories.to_coco(), "thresholds": dict(thresholds),
        "dicc": {"enabled": dicc_enabled, "w": dicc_w if dicc_enabled else None},
        "teacher_flip": bool(teacher_flip),
    }


@torch.no_grad()
def record_pseudo_labels(model: torch.nn.Module, index, image_ids: list[int], *, run_dir: str | Path,
                         iteration: int, manifest: dict, thresholds: dict, image_size: int, device: torch.device,
                         clip=None, dicc_w: float | None = None, batch_size: int = 8,
                         teacher_flip: bool = False) -> Path | None:
    """Record ``model``'s queries on ``image_ids``; sharded over ranks, written by rank 0.

    ``manifest`` carries run, phase, config_hash, dataset (the rest is filled in here).
    Returns the records folder on rank 0, None elsewhere.
    """
    has_gt = any(index.annotations(i) for i in image_ids)
    mine = list(image_ids)[dist_utils.rank()::dist_utils.world_size()]
    batches = []
    bar = tqdm(total=len(mine), desc=f"records @{iteration}", leave=False,
               disable=os.environ.get("PLDC_NO_PROGRESS") == "1" or not dist_utils.is_main())
    for start in range(0, len(mine), batch_size):
        ids = mine[start:start + batch_size]
        batches.append(record_batch(model, index, ids, thresholds=thresholds, image_size=image_size, device=device,
                                    has_gt=has_gt, clip=clip, dicc_w=dicc_w, teacher_flip=teacher_flip))
        bar.update(len(ids))
    bar.close()
    parts = dist_utils.all_gather_objects(batches)
    if not dist_utils.is_main():
        return None
    full_manifest = records_manifest(manifest, index, iteration, thresholds, dicc_enabled=clip is not None,
                                     dicc_w=dicc_w, teacher_flip=teacher_flip)
    with RecordWriter(run_dir, iteration, full_manifest) as writer:
        for rank_batches in parts:
            for tables in rank_batches:
                writer.add(*tables)
    return writer.path


def record_checkpoint(trainer) -> Path | None:
    """The trainer's records hook: its teacher (the student during burn-in) on the record sample."""
    cfg = trainer.cfg
    model = trainer.labelling_model
    ids = sample_record_images(trainer.data.unlabeled_ids, cfg.records.num_images, cfg.records.seed)
    w = dicc_w_at(cfg, trainer.iter) if trainer.clip is not None else None
    manifest = {"run": cfg.name, "phase": trainer.phase, "config_hash": cfg.hash(), "dataset": cfg.data.dataset}
    return record_pseudo_labels(model, trainer.data.train_index, ids, run_dir=trainer.run.path,
                                iteration=trainer.iter, manifest=manifest, thresholds=trainer.thresholds.as_dict(),
                                image_size=cfg.data.image_size, device=trainer.device, clip=trainer.clip,
                                dicc_w=w, teacher_flip=cfg.pldc.teacher_flip)
