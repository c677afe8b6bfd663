"""Curation of pseudo-labels: accept / reject / relabel decisions, and their export as COCO data.

Edits live in ``RUN/curation/edits.jsonl``, one JSON object per decision, appended and flushed
as it is made (a restart loses nothing; a line cut short by a crash is ignored). The latest
decision for a ``(iteration, image_id, query)`` key wins; ``"clear"`` undoes it. Both front ends
(Gradio, FiftyOne) write through ``CurationStore``, so their decisions share one format.

The exported COCO JSON (``export_curated_coco``) holds the accepted and relabelled
pseudo-labels as annotations over the recorded images; ``pldc train`` takes it as extra labeled
data (``data.extra_labeled_json``), with images read from the run's train image folder.
"""
from __future__ import annotations

import os
import time
from typing import Iterable

import numpy as np
import pandas as pd

from pldc_core.jsonl import append_json_lines, read_json_lines
from pldc_core.run_dir import RunDir

ACTIONS = ("accept", "reject", "relabel", "clear")
EDIT_COLUMNS = ["iteration", "image_id", "query", "action", "new_class", "source", "time"]


class CurationError(ValueError):
    """An edit or an export request is invalid; the message says which."""


class CurationStore:
    """The curation decisions of one run."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = RunDir(run_dir).curation / "edits.jsonl"

    def record(self, iteration: int, keys: Iterable[tuple[int, int]], action: str, new_class: int | None = None,
               source: str = "api") -> int:
        """Record one decision for every ``(image_id, query)`` in ``keys``; returns how many."""
        if action not in ACTIONS:
            raise CurationError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        if action == "relabel" and new_class is None:
            raise CurationError("relabel needs the new class")
        if action != "relabel":
            new_class = None
        now = time.time()
        records = [{"iteration": int(iteration), "image_id": int(i), "query": int(q), "action": action,
                    "new_class": None if new_class is None else int(new_class), "source": source, "time": now}
                   for i, q in keys]
        if not records:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return append_json_lines(self.path, records, sync=True)

    def edits(self, iteration: int | None = None) -> pd.DataFrame:
        """The standing decision per key (cleared keys dropped), optionally for one iteration."""
        frame = pd.DataFrame(read_json_lines(self.path), columns=EDIT_COLUMNS)
        if iteration is not None:
            frame = frame[frame["iteration"] == iteration]
        frame = frame.drop_duplicates(["iteration", "image_id", "query"], keep="last")
        frame = frame[frame["action"] != "clear"]
        frame["new_class"] = frame["new_class"].astype("Int64")
        return frame.reset_index(drop=True)


def apply_edits(queries: pd.DataFrame, edits: pd.DataFrame) -> pd.DataFrame:
    """``queries`` with ``curation`` (accept/reject/relabel or None) and ``final_class`` columns."""
    out = queries.copy()
    if edits.empty:
        out["curation"] = None
        out["final_class"] = out["pred_class"]
        return out
    e = edits[["image_id", "query", "action", "new_class"]].rename(columns={"action": "curation"})
    out = out.drop(columns=[c for c in ("curation", "final_class") if c in out]).merge(
        e, on=["image_id", "query"], how="left")
    out["curation"] = out["curation"].astype(object).where(out["curation"].notna(), None)
    relabelled = out["curation"] == "relabel"
    out["final_class"] = np.where(relabelled, out["new_class"].fillna(-1).astype(np.int64),
                                  out["pred_class"].astype(np.int64))
    return out.drop(columns=["new_class"])


def curated_annotations(queries: pd.DataFrame, *, include_kept: bool = False) -> pd.DataFrame:
    """The rows that become labels: accepted or relabelled, plus (optionally) DDTF-kept unreviewed ones."""
    chosen = queries["curation"].isin(["accept", "relabel"])
    if include_kept:
        chosen |= queries["curation"].isna() & queries["keep_ddtf"]
    return queries[chosen & (queries["area"] > 0)]


def export_curated_coco(run_dir: str | os.PathLike, iteration: int, out_path: str | os.PathLike, *,
                        include_kept: bool = False) -> dict:
    """Write the curated pseudo-labels of one checkpoint as a COCO instances JSON; returns counts."""
    from pldc_core.atomic import write_json
    from pldc_core.records.store import load_records

    rec = load_records(run_dir, iteration, columns=[
        "image_id", "query", "pred_class", "keep_ddtf", "mask_rle", "height", "width", "area", "bbox", "s"])
    info = rec.info
    queries = apply_edits(rec.queries, CurationStore(run_dir).edits(info.iteration))
    chosen = curated_annotations(queries, include_kept=include_kept)
    categories = list(info.categories)
    n = len(categories)
    bad = chosen[(chosen["final_class"] < 0) | (chosen["final_class"] >= n)]
    if len(bad):
        row = bad.iloc[0]
        raise CurationError(f"image {row.image_id} query {row.query}: class index {row.final_class} is not one of "
                            f"the run's {n} categories")
    image_ids = sorted(set(chosen["image_id"].tolist()))
    images = rec.images.set_index("image_id").loc[image_ids].reset_index() if image_ids else rec.images.iloc[:0]
    annotations = [{
        "id": k + 1, "image_id": int(row.image_id), "category_id": int(categories[int(row.final_class)]["id"]),
        "segmentation": {"size": [int(row.height), int(row.width)], "counts": row.mask_rle},
        "area": int(row.area), "bbox": [float(v) for v in row.bbox], "iscrowd": 0,
        "score": float(row.s), "pldc_source": {"iteration": info.iteration, "query": int(row.query)},
    } for k, row in enumerate(chosen.sort_values(["image_id", "query"]).itertuples())]
    coco = {
        "info": {"description": f"curated pseudo-labels of {info.run} at iteration {info.iteration}",
                 "image_root": info.image_root},
        "images": [{"id": int(r.image_id), "file_name": r.file_name, "height": int(r.height), "width": int(r.width)}
                   for r in images.itertuples()],
        "annotations": annotations,
        "categories": categories,
    }
    write_json(out_path, coco, indent=None)
    counts = queries["curation"].value_counts().to_dict()
    return {"images": len(coco["images"]), "annotations": len(annotations), "accepted": counts.get("accept", 0),
            "relabelled": counts.get("relabel", 0), "rejected": counts.get("reject", 0), "path": str(out_path)}
