"""Cityscapes ``gtFine`` polygons -> COCO instance annotations for the 8 thing classes.

Input layout (as downloaded)::

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_polygons.json

Objects are painted in file order, later ones over earlier ones, as Cityscapes' own
``json2instanceImg`` does, so an instance's mask is the part of its polygon that nothing drawn
after it covers - whether that is another instance, a group or a stuff region (a pole in front
of a car). Groups (``cargroup``, ``persongroup``, ...) and non-thing labels become no instance
but still occlude; ``deleted`` objects are ignored. Masks are stored as RLE, file names relative
to ``ROOT/leftImg8bit/<split>``, category ids are Cityscapes' label ids.
"""
from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from tqdm import tqdm

from pldc_core import atomic
from pldc_core.data.coco import DatasetError, mask_to_rle, read_json_file

logger = logging.getLogger(__name__)

# (Cityscapes label id, name, supercategory) of the classes evaluated as instances.
THING_CLASSES: tuple[tuple[int, str, str], ...] = (
    (24, "person", "human"), (25, "rider", "human"),
    (26, "car", "vehicle"), (27, "truck", "vehicle"), (28, "bus", "vehicle"),
    (31, "train", "vehicle"), (32, "motorcycle", "vehicle"), (33, "bicycle", "vehicle"),
)
POLYGON_SUFFIX = "_gtFine_polygons.json"


def cityscapes_categories() -> list[dict]:
    return [{"id": i, "name": n, "supercategory": s} for i, n, s in THING_CLASSES]


def _read_polygon_file(path: Path) -> tuple[int, int, list[dict]]:
    data = read_json_file(path, "polygon file not found")
    if not isinstance(data, dict) or not all(k in data for k in ("imgHeight", "imgWidth", "objects")):
        raise DatasetError(f"{path}: needs 'imgHeight', 'imgWidth' and 'objects'")
    height, width, objects = data["imgHeight"], data["imgWidth"], data["objects"]
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise DatasetError(f"{path}: imgHeight/imgWidth must be positive integers")
    if not isinstance(objects, list):
        raise DatasetError(f"{path}: 'objects' must be a list")
    return height, width, objects


def _points(path: Path, index: int, obj) -> list[tuple[float, float]] | None:
    """The object's polygon as (x, y) tuples; None for fewer than 3 points."""
    if not isinstance(obj, dict) or not isinstance(obj.get("label"), str) or not isinstance(obj.get("polygon"), list):
        raise DatasetError(f"{path}: objects[{index}] needs a string 'label' and a list 'polygon'")
    pts = []
    for p in obj["polygon"]:
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)):
            raise DatasetError(f"{path}: objects[{index}] ({obj['label']}): polygon points must be [x, y]")
        if not all(math.isfinite(v) for v in p):  # NaN would be drawn as some other shape, silently
            raise DatasetError(f"{path}: objects[{index}] ({obj['label']}): polygon point {p} is not finite")
        pts.append((float(p[0]), float(p[1])))
    return pts if len(pts) >= 3 else None


def _convert_image(path: Path, image_id: int, first_ann_id: int, counts: Counter) -> tuple[int, int, list[dict]]:
    height, width, objects = _read_polygon_file(path)
    thing_ids = {name: cid for cid, name, _ in THING_CLASSES}
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    instances: list[int] = []  # category id of instance k+1 on the canvas
    for index, obj in enumerate(objects):
        if isinstance(obj, dict) and obj.get("deleted"):
            continue
        pts = _points(path, index, obj)
        if pts is None:
            counts["degenerate_polygons"] += 1
            continue
        label = obj["label"]
        if label in thing_ids:
            instances.append(thing_ids[label])
            draw.polygon(pts, fill=len(instances))
        else:
            if label.endswith("group"):
                counts["groups"] += 1
            draw.polygon(pts, fill=0)
    ids = np.asarray(canvas)
    anns = []
    for k, category_id in enumerate(instances, start=1):
        mask = ids == k
        area = int(mask.sum())
        if area == 0:
            counts["fully_occluded"] += 1
            continue
        ys, xs = np.nonzero(mask)
        anns.append({"id": first_ann_id + len(anns), "image_id": image_id, "category_id": category_id,
                     "segmentation": mask_to_rle(mask), "area": area,
                     "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                              int(ys.max() - ys.min() + 1)],
                     "iscrowd": 0})
    return height, width, anns


def convert_cityscapes(root: str | os.PathLike, split: str, out_json: str | os.PathLike,
                       progress: bool = True) -> dict:
    """Convert one split; writes ``out_json`` atomically and returns counts (images, instances
    per class, group objects seen, fully occluded instances dropped, degenerate polygons)."""
    root = Path(root)
    gt_dir, image_dir = root / "gtFine" / split, root / "leftImg8bit" / split
    for folder in (gt_dir, image_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: folder not found (expected the Cityscapes layout "
                               f"leftImg8bit/{split}/<city>/ and gtFine/{split}/<city>/ under {root})")
    files = sorted(gt_dir.glob(f"*/*{POLYGON_SUFFIX}"))
    if not files:
        raise DatasetError(f"{gt_dir}: no */*{POLYGON_SUFFIX} files")
    images, annotations, counts = [], [], Counter()
    disable = not progress or os.environ.get("PLDC_NO_PROGRESS") == "1"
    for image_id, path in enumerate(tqdm(files, desc=f"cityscapes {split}", unit="img", disable=disable), start=1):
        file_name = f"{path.parent.name}/{path.name[: -len(POLYGON_SUFFIX)]}_leftImg8bit.png"
        image_path = image_dir / file_name
        height, width, anns = _convert_image(path, image_id, len(annotations) + 1, counts)
        try:
            with Image.open(image_path) as img:
                size = img.size
        except FileNotFoundError:
            raise DatasetError(f"{path}: its image {image_path} does not exist") from None
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"{image_path}: cannot read image ({exc})") from None
        if size != (width, height):
            raise DatasetError(f"{image_path}: image is {size[1]}x{size[0]} but {path.name} says {height}x{width}")
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        annotations.extend(anns)
    if counts["degenerate_polygons"]:
        logger.warning("%s: skipped %d polygon(s) with fewer than 3 points", gt_dir, counts["degenerate_polygons"])
    atomic.write_json(out_json, {"info": {"description": f"Cityscapes gtFine {split}, 8 thing classes"},
                                 "images": images, "annotations": annotations,
                                 "categories": cityscapes_categories()}, indent=None)
    names = {cid: name for cid, name, _ in THING_CLASSES}
    per_class = Counter(names[a["category_id"]] for a in annotations)
    return {"images": len(images), "instances": len(annotations),
            "per_class": {name: per_class.get(name, 0) for _, name, _ in THING_CLASSES},
            "groups": counts["groups"], "fully_occluded": counts["fully_occluded"],
            "degenerate_polygons": counts["degenerate_polygons"]}
