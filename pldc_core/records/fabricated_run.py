"""A fake but realistic PL-DC run directory, for the tests and benchmarks of everything that reads runs.

``fabricate_run(tmp_path / "run")`` writes, deterministically for a given ``seed`` (defaults
take well under 2 s)::

    RUN/config.yaml             a resolved ExperimentConfig (pldc_core.config); its hash is in the manifests
    RUN/metrics.jsonl           one line per 50 iterations, keys as the trainer writes them
    RUN/eval.jsonl              one line per recorded iteration: iter, model, AP, AP50, AP75, APs, APm, APl,
                                AP_per_class
    RUN/images/000001.png ...   the recorded images (RGB, ellipses on a noisy background)
    RUN/records/iter_XXXXXXX/   per iteration, written with the real builders and writer of
                                records.rows and records.store (build_query_table, build_gt_table, RecordWriter)

Categories (``CATEGORIES``; COCO ids are odd numbers 1, 3, 5, ... so that id and index differ):
cat, dog, horse (animal), car, bus, truck (vehicle), chair, couch (furniture); classes beyond 8
are ``thing8``, ``thing9``, ... in groups of three. Every image has 1-3 elliptic objects except
every tenth (index 9, 19, ...), which has none (``has_gt`` stays True: known to be empty).

The teacher's queries are drawn per image from roles, and the later the iteration the more
of them are accurate: ``good`` (right class, tight mask), ``dup`` (a less confident duplicate
of a good one, so masks overlap), ``loc`` (right class, shifted or shrunken mask), ``sim``
(tight mask, another class of the same supercategory), ``oth`` (tight mask, a class of another
supercategory), ``both`` (another class and a poor mask), ``bg`` (a blob away from the
objects), ``empty`` (no pixel above 0.5, confident "no object"). The error types in the records
are computed from the real masks by ``classify_errors``, so roles only make each type likely.
Every recorded iteration is in the "semi" phase (burn-in ends at ``iterations[0] // 2``); DICC
(with ``with_dicc``) ran on the queries DDTF keeps, with CLIP favouring the true class.

``fabricate_query_frame(n_rows, num_classes, seed)`` makes a large query table fast (1-2 s per
million rows), without masks or PNGs (``mask_rle`` and ``unc_png`` are None), for
benchmarks; its columns are consistent (error types follow the classes and IoUs).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from PIL import Image

from pldc_core.atomic import write_text
from pldc_core.config import from_dict, save_config
from pldc_core.method import pseudo_labels as pl
from pldc_core.method.filters import ddtf_keep
from pldc_core.records.rows import DiccInfo, GroundTruth, build_gt_table, build_image_row, build_query_table, list_array
from pldc_core.records.schema import ERROR_TYPES, QUERY_SCHEMA
from pldc_core.records.store import RecordWriter, to_frame

BASE_CATEGORIES = (("cat", "animal"), ("dog", "animal"), ("horse", "animal"), ("car", "vehicle"),
                   ("bus", "vehicle"), ("truck", "vehicle"), ("chair", "furniture"), ("couch", "furniture"))
# Looser than the paper: more kept, DICC changes some; no mask-area filter (the config says so too).
THRESHOLDS = {"filter": "ddtf", "c_t": 0.7, "m_t": 0.85, "s_t": 0.595, "mask_area_threshold": 0}
STRIDE = 4  # mask logits are at 1/4 of the image size, as Mask2Former's
ROLES = ("good", "dup", "loc", "sim", "oth", "both", "bg", "empty")


def categories(num_classes: int) -> list[dict]:
    """COCO-style categories in class-index order (ids 1, 3, 5, ...)."""
    out = []
    for i in range(num_classes):
        name, sup = BASE_CATEGORIES[i] if i < len(BASE_CATEGORIES) else (f"thing{i}", f"group{i // 3}")
        out.append({"id": 2 * i + 1, "name": name, "supercategory": sup})
    return out


def _role_probs(progress: float) -> np.ndarray:
    """Probabilities of ROLES for a teacher ``progress`` in [0, 1] (0: first recorded iteration)."""
    p = np.array([0.26 + 0.14 * progress, 0.08, 0.12 - 0.04 * progress, 0.10 - 0.04 * progress,
                  0.08 - 0.03 * progress, 0.05 - 0.02 * progress, 0.13, 0.18 - 0.01 * progress])
    return p / p.sum()


def _ellipse_field(hw: tuple[int, int], scale: float, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """``1 - d`` at pixel centres, where ``d`` is the normalised elliptic distance (0 at the centre, 1 on
    the border); ``scale`` is the image pixels per pixel of the grid."""
    y = (np.arange(hw[0]) + 0.5) * scale
    x = (np.arange(hw[1]) + 0.5) * scale
    d = np.sqrt(((y[:, None] - cy) / ry) ** 2 + ((x[None, :] - cx) / rx) ** 2)
    return 1.0 - d


def _objects(rng: np.random.Generator, n: int, H: int, W: int, num_classes: int) -> list[dict]:
    objs = []
    for _ in range(n):
        ry, rx = rng.uniform(0.12, 0.28) * H, rng.uniform(0.12, 0.28) * W
        objs.append({"cy": rng.uniform(ry, H - ry), "cx": rng.uniform(rx, W - rx), "ry": ry, "rx": rx,
                     "cls": int(rng.integers(num_classes))})
    return objs


def _draw_image(rng: np.random.Generator, objs: list[dict], H: int, W: int, num_classes: int) -> np.ndarray:
    img = rng.normal(0.45, 0.06, size=(H, W, 3))
    for o in objs:
        hue = o["cls"] / max(1, num_classes)
        colour = np.array([0.5 + 0.4 * math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)])
        inside = _ellipse_field((H, W), 1.0, o["cy"], o["cx"], o["ry"], o["rx"]) >= 0
        img[inside] = colour + rng.normal(0, 0.04, size=(int(inside.sum()), 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _class_for(role: str, true_cls: int, cats: list[dict], rng: np.random.Generator) -> int:
    sup = [c["supercategory"] for c in cats]
    siblings = [i for i in range(len(cats)) if i != true_cls and sup[i] == sup[true_cls]]
    others = [i for i in range(len(cats)) if sup[i] != sup[true_cls]]
    if role == "sim" and siblings:
        return int(rng.choice(siblings))
    if role in ("sim", "oth", "both") and others:
        return int(rng.choice(others))
    if role in ("sim", "oth", "both"):
        return int(rng.choice([i for i in range(len(cats)) if i != true_cls] or [true_cls]))
    return true_cls


def _teacher_outputs(rng: np.random.Generator, objs: list[dict], H: int, W: int, n_queries: int,
                     cats: list[dict], progress: float) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """Class logits ``[Q, N+1]``, low-resolution mask logits ``[Q, h, w]`` and each query's (role, true class)."""
    N = len(cats)
    h, w = math.ceil(H / STRIDE), math.ceil(W / STRIDE)
    class_logits = rng.normal(0.0, 1.0, size=(n_queries, N + 1))
    mask_logits = np.empty((n_queries, h, w))
    roles = rng.choice(len(ROLES), size=n_queries, p=_role_probs(progress))
    sources = []
    for q, r in enumerate(roles):
        role = ROLES[r] if objs or ROLES[r] == "empty" else "bg"
        o = objs[int(rng.integers(len(objs)))] if objs else None
        true_cls = o["cls"] if o else int(rng.integers(N))
        cls = _class_for(role, true_cls, cats, rng)
        sharp = rng.uniform(7, 18)
        if role in ("good", "dup", "sim", "oth"):
            jitter = rng.normal(0, 0.06, size=4)
            geom = (o["cy"] + jitter[0] * o["ry"], o["cx"] + jitter[1] * o["rx"],
                    o["ry"] * (1 + jitter[2]), o["rx"] * (1 + jitter[3]))
            conf = {"good": rng.uniform(4, 8), "dup": rng.uniform(1, 4)}.get(role, rng.uniform(2.5, 6))
        elif role in ("loc", "both"):
            shift = rng.choice([-1, 1], size=2) * rng.uniform(0.9, 1.6, size=2)
            geom = (o["cy"] + shift[0] * o["ry"], o["cx"] + shift[1] * o["rx"], o["ry"] * rng.uniform(0.5, 1),
                    o["rx"] * rng.uniform(0.5, 1))
            sharp, conf = rng.uniform(3, 10), rng.uniform(1.5, 5)
        elif role == "bg":
            r_ = rng.uniform(0.06, 0.15) * H
            geom = (rng.uniform(r_, H - r_), rng.uniform(r_, W - r_), r_, r_)
            sharp, conf = rng.uniform(2, 8), rng.uniform(0, 3.5)
        else:  # empty
            geom, conf = None, rng.uniform(-1, 1)
        if geom is None:
            mask_logits[q] = rng.uniform(-8, -2) + rng.normal(0, 0.3, size=(h, w))
            class_logits[q, N] += 5.0
        else:
            field = _ellipse_field((h, w), STRIDE, *geom)
            mask_logits[q] = np.clip(sharp * field, -12, 12) + rng.normal(0, 0.25, size=(h, w))
            class_logits[q, N] += 2.0
        class_logits[q, cls] += conf
        if cls != true_cls:  # a confused teacher keeps the true class as its runner-up
            class_logits[q, true_cls] += conf - rng.uniform(0.5, 2.5)
        sources.append((role, true_cls))
    return class_logits.astype(np.float32), mask_logits.astype(np.float32), sources


def _dicc(rng: np.random.Generator, class_logits: np.ndarray, keep: np.ndarray, sources: list[tuple[str, int]],
          N: int, w: float) -> DiccInfo:
    """CLIP probabilities for the kept queries (peaked on the true class 70% of the time) and Eq. 9's fusion."""
    idx = np.flatnonzero(keep)
    favoured = np.array([sources[i][1] if rng.random() < 0.7 else int(rng.integers(N)) for i in idx], dtype=np.int64)
    logits = rng.normal(0, 1, size=(len(idx), N)) + 7.0 * np.eye(N)[favoured]
    clip = torch.as_tensor(logits).float().softmax(-1)
    p_hat = pl.teacher_class_probs(torch.as_tensor(class_logits[idx]))
    _, corrected = pl.dicc_fuse(p_hat, clip, w)
    return DiccInfo(clip_probs=clip.numpy(), w=w, corrected_classes=corrected.numpy(), query_indices=idx)


def _write_logs(run_dir: Path, iterations: tuple[int, ...], burn_in: int, max_iters: int, n_queries: int,
                with_dicc: bool, rng: np.random.Generator, class_names: list[str]) -> None:
    metrics = []
    for it in range(50, max(iterations) + 1, 50):
        semi = it > burn_in
        loss_sup = 2.5 * math.exp(-it / 600) + 0.6 + rng.normal(0, 0.03)
        line = {"iter": it, "phase": "semi" if semi else "burn_in", "lr": 1e-4 * (1 - it / max_iters) ** 0.9,
                "loss_sup": loss_sup, "loss_unsup": 0.0}
        if semi:
            # like the trainer: pseudo-label counts only once the teacher exists (b_u = 4 images)
            w = pl.dicc_weight(it - burn_in, max(1, max_iters - burn_in))
            n_q = 4 * n_queries
            kept = int(n_q * min(0.6, 0.1 + 0.25 * it / max(iterations)))
            line.update(loss_unsup=1.2 * math.exp(-it / 900) + 0.3 + rng.normal(0, 0.03), n_queries=n_q,
                        n_kept=kept, n_kept_ddtf=kept, n_kept_coupled=int(kept * 1.3),
                        n_dicc_changed=int(kept * w * 0.3) if with_dicc else None, dicc_w=w if with_dicc else None)
        line["loss"] = line["loss_sup"] + line["loss_unsup"]
        line["sec_per_iter"] = 0.21 + 0.05 * semi + abs(rng.normal(0, 0.01))
        metrics.append(line)
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
    evals = []
    # each class's AP a fixed multiple of the mean, the first class the best: their mean is the AP
    spread = np.linspace(1.6, 0.4, len(class_names)) if len(class_names) > 1 else np.ones(1)
    spread = spread / spread.mean()
    for it in iterations:
        ap = 30.0 * (1 - math.exp(-it / 700))
        evals.append({"iter": it, "model": "teacher" if it > burn_in else "student", "AP": ap, "AP50": ap * 1.6,
                      "AP75": ap * 0.95, "APs": ap * 0.4, "APm": ap * 1.05, "APl": ap * 1.4,
                      "AP_per_class": {name: ap * float(f) for name, f in zip(class_names, spread)}})
    write_text(run_dir / "eval.jsonl", "".join(json.dumps(e) + "\n" for e in evals))


def fabricate_run(run_dir, *, n_images: int = 20, n_queries: int = 10, iterations=(500, 1000), num_classes: int = 8,
                  seed: int = 0, with_gt: bool = True, with_dicc: bool = True,
                  image_size: tuple[int, int] = (64, 80), thresholds: dict | None = None) -> Path:
    """Write a fake run under ``run_dir`` (see the module docstring); returns ``run_dir`` as a Path.

    ``with_gt=False`` records no annotations (the GT-free mode); ``with_dicc=False`` leaves the
    DICC columns empty; ``thresholds`` replaces some of ``THRESHOLDS`` (e.g. ``{"c_t": 1.0}``:
    a run that keeps no pseudo-label). Same arguments, same files (but for the manifests' ``created``).
    """
    # The tensors are tiny: one thread avoids OpenMP waits that slow such ops 10x on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fabricate(Path(run_dir), n_images, n_queries, tuple(sorted(int(i) for i in iterations)),
                          num_classes, seed, with_gt, with_dicc, image_size, {**THRESHOLDS, **(thresholds or {})})
    finally:
        torch.set_num_threads(threads)


def _fabricate(run_dir: Path, n_images: int, n_queries: int, iterations: tuple[int, ...], num_classes: int,
               seed: int, with_gt: bool, with_dicc: bool, image_size: tuple[int, int], thresholds: dict) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    H, W = int(image_size[0]), int(image_size[1])
    cats = categories(num_classes)
    supercategory = {i: c["supercategory"] for i, c in enumerate(cats)}
    burn_in, max_iters = iterations[0] // 2, 2 * iterations[-1]

    cfg = from_dict({"name": run_dir.name, "output_dir": str(run_dir.parent),
                     "data": {"dataset": "fabricated", "image_size": 32 * max(1, round(max(H, W) / 32))},
                     "model": {"num_queries": n_queries},
                     "train": {"burn_in_iters": burn_in, "max_iters": max_iters, "checkpoint_every": 500},
                     "pldc": {"dicc": with_dicc, **thresholds},
                     "records": {"num_images": n_images, "seed": seed}})
    save_config(cfg, run_dir / "config.yaml")

    image_root = run_dir / "images"
    image_root.mkdir(exist_ok=True)
    scenes = []
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        objs = [] if i % 10 == 9 else _objects(rng, int(rng.integers(1, 4)), H, W, num_classes)
        image_id, file_name = i + 1, f"{i + 1:06d}.png"
        Image.fromarray(_draw_image(rng, objs, H, W, num_classes)).save(image_root / file_name)
        gt = None
        if with_gt:
            masks = np.stack([_ellipse_field((H, W), 1.0, o["cy"], o["cx"], o["ry"], o["rx"]) >= 0 for o in objs]) \
                if objs else np.zeros((0, H, W), dtype=bool)
            gt = GroundTruth(masks, np.array([o["cls"] for o in objs], dtype=np.int64),
                             np.arange(len(objs), dtype=np.int64) + 100 * image_id)
        scenes.append((image_id, file_name, objs, gt))

    for k, it in enumerate(iterations):
        semi = it > burn_in
        w = pl.dicc_weight(it - burn_in, max_iters - burn_in) if (with_dicc and semi) else None
        manifest = {"run": run_dir.name, "iteration": it, "phase": "semi" if semi else "burn_in",
                    "config_hash": cfg.hash(), "dataset": "fabricated", "image_root": str(image_root.resolve()),
                    "categories": cats, "thresholds": dict(thresholds), "dicc": {"enabled": w is not None, "w": w}}
        progress = k / max(1, len(iterations) - 1)
        with RecordWriter(run_dir, it, manifest) as writer:
            for image_id, file_name, objs, gt in scenes:
                rng = np.random.default_rng([seed, image_id, it])
                class_logits, mask_logits, sources = _teacher_outputs(rng, objs, H, W, n_queries, cats, progress)
                dicc = None
                if w is not None:
                    c, _ = pl.class_quality(torch.as_tensor(class_logits))
                    m = pl.mask_quality(torch.as_tensor(mask_logits))
                    keep = ddtf_keep(c, m, thresholds["c_t"], thresholds["m_t"]).numpy()
                    dicc = _dicc(rng, class_logits, keep, sources, num_classes, w)
                queries = build_query_table(image_id, class_logits, mask_logits, (H, W), thresholds=thresholds,
                                            gt=gt, supercategory=supercategory, dicc=dicc)
                writer.add(queries, build_gt_table(image_id, gt, (H, W)),
                           build_image_row(image_id, file_name, (H, W), has_gt=with_gt))
    _write_logs(run_dir, iterations, burn_in, max_iters, n_queries, with_dicc, np.random.default_rng([seed, 7]),
                [c["name"] for c in cats])
    return run_dir


def fabricate_query_table(n_rows: int, num_classes: int = 80, seed: int = 0, queries_per_image: int = 100,
                          image_hw: tuple[int, int] = (480, 640)) -> pa.Table:
    """``n_rows`` plausible query records (``QUERY_SCHEMA``) built with numpy only: no masks or PNGs.

    Supercategories are those of ``categories(num_classes)``. A third of the rows lie on no GT (BG);
    the rest have an IoU drawn high or low, a class that is right 70% of the time, and c, m rising
    with the IoU; error types, GT columns and keep flags (``THRESHOLDS``) follow from those.
    DICC ran on the DDTF-kept rows. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    n, N = int(n_rows), int(num_classes)
    sup_names = [c["supercategory"] for c in categories(N)]
    sup = np.unique(sup_names, return_inverse=True)[1]
    row = np.arange(n)
    gt_class = rng.integers(N, size=n)
    on_bg = rng.random(n) < 1 / 3
    iou = np.where(rng.random(n) < 0.6, rng.uniform(0.5, 1.0, size=n) ** 0.5, rng.uniform(0.01, 0.5, size=n))
    iou = np.where(on_bg, 0.0, iou)
    wrong = rng.random(n) < 0.3
    # a wrong class is a sibling (same supercategory) for a third of the wrong rows, where one exists
    siblings = [[j for j in range(N) if j != i and sup[j] == sup[i]] or [(i + 1) % N] for i in range(N)]
    sib_table = np.array([(row_ * N)[:N] for row_ in siblings])
    sibling = sib_table[gt_class, rng.integers(N, size=n) % np.array([len(x) for x in siblings])[gt_class]]
    other = (gt_class + rng.integers(1, max(2, N), size=n)) % N
    pred = np.where(wrong, np.where(rng.random(n) < 1 / 3, sibling, other), gt_class)
    same, same_sup = pred == gt_class, sup[pred] == sup[gt_class]
    code = np.select([on_bg, same & (iou > 0.5), same_sup & (iou > 0.5), iou > 0.5, same],
                     [ERROR_TYPES.index(t) for t in ("BG", "Cor", "Sim", "Oth", "Loc")], ERROR_TYPES.index("Both"))
    c = np.clip(1 / (1 + np.exp(-(rng.normal(0, 1.2, size=n) + 4 * (iou - 0.35) + 1.5 * ~wrong))), 0.01, 0.999)
    m = np.clip(0.55 + 0.4 * iou + rng.normal(0, 0.06, size=n), 0.0, 0.999)
    k = min(5, N)
    top_classes = (pred[:, None] + np.arange(k)[None, :]) % N
    top_probs = c[:, None] * np.array([1.0, 0.3, 0.1, 0.05, 0.02])[None, :k]
    keep_ddtf = (c >= THRESHOLDS["c_t"]) & (m >= THRESHOLDS["m_t"])
    area = rng.integers(20, image_hw[0] * image_hw[1] // 8, size=n)
    side = np.sqrt(area)
    bbox = np.stack([rng.uniform(0, image_hw[1] - side), rng.uniform(0, image_hw[0] - side), side, side], axis=1)
    corrected = np.where(rng.random(n) < 0.8, gt_class, pred)
    clip_probs = -np.sort(-rng.random((n, k)), axis=1)
    clip_probs /= clip_probs.sum(axis=1, keepdims=True) + rng.random((n, 1))
    overlap = np.where(rng.random(n) < 0.2, rng.uniform(0.2, 0.8, size=n), np.nan)
    qpi = int(queries_per_image)
    cols = {
        "image_id": pa.array(row // qpi), "query": pa.array((row % qpi).astype(np.int16)),
        "pred_class": pa.array(pred.astype(np.int16)), "c": pa.array(c.astype(np.float32)),
        "m": pa.array(m.astype(np.float32)), "s": pa.array((c * m).astype(np.float32)),
        "top5_classes": list_array(top_classes.astype(np.int16), pa.int16()),
        "top5_probs": list_array(top_probs.astype(np.float32), pa.float32()),
        "mask_rle": pa.nulls(n, pa.string()),
        "height": pa.array(np.full(n, image_hw[0], dtype=np.int32)),
        "width": pa.array(np.full(n, image_hw[1], dtype=np.int32)),
        "area": pa.array(area.astype(np.int64)), "bbox": list_array(bbox.astype(np.float32), pa.float32()),
        "keep_ddtf": pa.array(keep_ddtf), "keep_coupled": pa.array(c * m >= THRESHOLDS["s_t"]),
        "gt_id": pa.array(np.where(on_bg, -1, row).astype(np.int64)),
        "gt_class": pa.array(np.where(on_bg, -1, gt_class).astype(np.int16)),
        "iou": pa.array(iou.astype(np.float32)),
        "error_type": pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int8)), pa.array(ERROR_TYPES))
                        .cast(pa.string()),
        "clip_top5_classes": list_array(top_classes.astype(np.int16), pa.int16(), keep_ddtf),
        "clip_top5_probs": list_array(clip_probs.astype(np.float32), pa.float32(), keep_ddtf),
        "dicc_w": pa.array(np.where(keep_ddtf, 0.3, np.nan).astype(np.float32)),
        "corrected_class": pa.array(np.where(keep_ddtf, corrected, -1).astype(np.int16)),
        "unc_png": pa.nulls(n, pa.binary()),
        "unc_mean_inside": pa.array(np.clip(0.25 - 0.2 * iou + rng.normal(0, 0.03, size=n), 0, 1).astype(np.float32)),
        "unc_mean_boundary": pa.array(np.clip(0.6 - 0.2 * iou + rng.normal(0, 0.05, size=n), 0, 1).astype(np.float32)),
        "unc_mean_overlap": pa.array(overlap.astype(np.float32)),
    }
    return pa.table([cols[name] for name in QUERY_SCHEMA.names], schema=QUERY_SCHEMA)


def fabricate_query_frame(n_rows: int, num_classes: int = 80, seed: int = 0) -> pd.DataFrame:
    """``fabricate_query_table`` as the DataFrame ``load_records`` would give (``records.to_frame``)."""
    return to_frame(fabricate_query_table(n_rows, num_classes, seed))


def fabricate_large_checkpoint(run_dir, iteration: int, n_rows: int, *, num_classes: int = 80, seed: int = 0) -> Path:
    """One checkpoint of ``n_rows`` fabricated queries (``fabricate_query_table``) with the GT rows and
    images they name, written with the real writer: the large tables the benchmarks load."""
    from pldc_core.records.schema import GT_SCHEMA, IMAGE_SCHEMA
    from pldc_core.records.store import write_records

    run_dir = Path(run_dir)
    queries = fabricate_query_table(n_rows, num_classes, seed=seed)
    frame = queries.select(["image_id", "gt_id", "gt_class", "height", "width"]).to_pandas()
    on_gt = frame[frame["gt_id"] >= 0].drop_duplicates("gt_id")
    g = len(on_gt)
    gt = pa.table({"image_id": pa.array(on_gt["image_id"].to_numpy(np.int64)),
                   "gt_id": pa.array(on_gt["gt_id"].to_numpy(np.int64)),
                   "gt_class": pa.array(on_gt["gt_class"].to_numpy(np.int16)),
                   "area": pa.array(np.full(g, 5000, np.int64)), "mask_rle": pa.nulls(g, pa.string()),
                   "height": pa.array(on_gt["height"].to_numpy(np.int32)),
                   "width": pa.array(on_gt["width"].to_numpy(np.int32)),
                   "bbox": list_array(np.zeros((g, 4), np.float32), pa.float32())}, schema=GT_SCHEMA)
    image_ids = np.unique(frame["image_id"].to_numpy(np.int64))
    images = pa.table({"image_id": pa.array(image_ids), "file_name": [f"{i:06d}.jpg" for i in image_ids],
                       "height": pa.array(np.full(len(image_ids), 480, np.int32)),
                       "width": pa.array(np.full(len(image_ids), 640, np.int32)),
                       "has_gt": pa.array(np.ones(len(image_ids), bool))}, schema=IMAGE_SCHEMA)
    manifest = {"run": run_dir.name, "iteration": iteration, "phase": "semi", "config_hash": "0" * 12,
                "dataset": "fabricated", "image_root": str(run_dir / "images"), "categories": categories(num_classes),
                "thresholds": dict(THRESHOLDS), "dicc": {"enabled": True, "w": 0.3}}
    return write_records(run_dir, iteration, queries, gt, images, manifest)
