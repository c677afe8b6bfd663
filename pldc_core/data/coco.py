"""COCO-format instance segmentation datasets: load, validate, index.

``load_coco`` reads an annotation JSON, checks it (see ``validate_coco`` for the list of checks)
and returns a ``CocoIndex``. Problems that break the file's structure (bad JSON, missing keys,
duplicate ids, references to unknown images or categories, wrongly typed segmentations) are
always errors. Problems confined to one annotation or image (empty or degenerate polygons,
malformed RLE, zero-area masks, missing image files) are errors with ``strict=True``; with
``strict=False`` the annotation (or the image with its annotations) is skipped and a counted
warning is logged, never silently.

``skip_degenerate=True`` (what training uses) skips annotations whose geometry is empty even in
strict mode: an empty polygon list, a polygon of fewer than 3 points, a mask of zero area (a
collinear polygon, an all-zero RLE) or a box of zero width or height. COCO train2017 holds a
few of these. One warning counts them and names the first ids; ``pldc data validate`` still
lists each one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image, UnidentifiedImageError

from pldc_core.structures import Categories

logger = logging.getLogger(__name__)

# Problem kinds of an annotation with no usable geometry (skipped by ``skip_degenerate``)
DEGENERATE_KINDS = frozenset({"empty_segmentation", "degenerate_polygon", "zero_area", "zero_size_box"})

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and the offending id or key."""


@dataclass(frozen=True)
class Problem:
    """One finding of ``validate_coco``. ``skippable`` problems can be dropped with a warning."""

    kind: str
    message: str
    skippable: bool
    image_id: int | None = None
    ann_id: int | None = None


# ---------------------------------------------------------------------------------------------
# Masks and RLE


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE ``{"size": [h, w], "counts": str}`` of a 2-D bool/0-1 mask."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def segmentation_to_rle(segmentation: list | dict, height: int, width: int) -> dict:
    """pycocotools RLE of a COCO segmentation (polygons, uncompressed or compressed RLE)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def annotation_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation to a bool ``[height, width]`` array."""
    rle = segmentation_to_rle(segmentation, height, width)
    with warnings.catch_warnings():
        # pycocotools 2.0.x's decode trips NumPy 2's __array__(copy=...) deprecation on every
        # call; the result is correct and the warning is not ours to fix.
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _rle_string_runs(counts: str) -> list[int] | None:
    """Run lengths of a compressed RLE string (COCO's 6-bit, delta-coded format); None if malformed."""
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                return None
            c = ord(counts[pos]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            pos += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _check_segmentation(seg, height: int, width: int) -> tuple[str, str, bool] | None:
    """None if usable, else ``(kind, detail, skippable)``."""
    if isinstance(seg, list):
        if not seg:
            return "empty_segmentation", "segmentation is an empty polygon list", True
        for ring in seg:
            if not isinstance(ring, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in ring):
                return "malformed_polygon", "polygon is not a list of numbers", False
            if len(ring) % 2:
                return "malformed_polygon", f"polygon has an odd number of coordinates ({len(ring)})", True
            if len(ring) < 6:
                return "degenerate_polygon", f"polygon has fewer than 3 points ({len(ring)} coordinates)", True
            if not all(_is_finite_number(v) for v in ring):
                return "malformed_polygon", "polygon has a coordinate that is not a finite number (NaN or infinity)", True
            # pycocotools rasterises every edge: a point millions of pixels away exhausts the memory.
            # Points somewhat outside are fine (clipped); "far" is ten image sizes and more.
            margin = 10 * max(height, width) + 1000
            xs, ys = [float(v) for v in ring[0::2]], [float(v) for v in ring[1::2]]
            if min(xs) < -margin or max(xs) > width + margin or min(ys) < -margin or max(ys) > height + margin:
                far = next((x, y) for x, y in zip(xs, ys)
                           if not (-margin <= x <= width + margin and -margin <= y <= height + margin))
                return ("polygon_outside_image", f"polygon point ({far[0]:g}, {far[1]:g}) lies far outside the "
                        f"image (width {width}, height {height})", True)
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
            return "malformed_rle", "RLE has no valid 'size' [h, w]", False
        if size != [height, width]:
            return "malformed_rle", f"RLE size {size} differs from the image size [{height}, {width}]", True
        if isinstance(counts, str):
            runs = _rle_string_runs(counts)
        elif isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            runs = counts
        else:
            return "malformed_rle", "RLE 'counts' is neither a string nor a list of integers", False
        if runs is None or any(r < 0 for r in runs) or sum(runs) != height * width:
            return "malformed_rle", f"RLE counts do not add up to {height}x{width} pixels", True
        return None
    return "malformed_segmentation", f"segmentation is a {type(seg).__name__}, not polygons or RLE", False


# ---------------------------------------------------------------------------------------------
# Validation


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float's range
        return False


def read_json_file(path: str | os.PathLike, missing: str = "file not found"):
    """Parse a JSON file; DatasetError names the file and says ``missing`` when it does not exist,
    or where the syntax breaks, or that it is not UTF-8 text."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: {missing}") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno} "
                           f"(char {exc.pos}): {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_coco_json(json_path: str | os.PathLike) -> dict:
    """Parse a COCO JSON file; DatasetError names the file and the position of a syntax error."""
    json_path = Path(json_path)
    data = read_json_file(json_path, "annotation file not found")
    if not isinstance(data, dict):
        raise DatasetError(f"{json_path}: top level must be a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{json_path}: missing top-level key '{key}'")
        if not isinstance(data[key], list):
            raise DatasetError(f"{json_path}: '{key}' must be a list, got {type(data[key]).__name__}")
    return data


def validate_coco(data: dict, image_root: str | os.PathLike | None) -> tuple[list[Problem], dict[int, int]]:
    """Check a parsed COCO dict. Returns ``(problems, areas)`` where ``areas`` maps each usable
    annotation id to its mask's pixel count. ``image_root=None`` skips the image-file checks.

    Checks: required keys and types of images/categories/annotations; duplicate image,
    annotation and category ids (and category names); annotations whose image_id or
    category_id is unknown; empty, degenerate or malformed polygons (NaN or infinite
    coordinates, points far outside the image); malformed RLE or RLE of the wrong size; an
    ``area`` that is not a number >= 0; zero-area masks; image files missing under ``image_root``.
    """
    problems: list[Problem] = []

    def add(kind, message, skippable, image_id=None, ann_id=None):
        problems.append(Problem(kind, message, skippable, image_id, ann_id))

    images: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            add("bad_image", f"images[{i}] is not an object", False)
            continue
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            add("bad_image", f"images[{i}] (id {img.get('id')!r}) is missing key(s) {missing}", False)
            continue
        iid = img["id"]
        if not _is_int(iid):
            add("bad_image", f"images[{i}]: id {iid!r} is not an integer", False)
            continue
        if not (_is_int(img["height"]) and _is_int(img["width"]) and img["height"] > 0 and img["width"] > 0):
            add("bad_image", f"image id {iid}: height/width must be positive integers, got "
                f"{img['height']!r} x {img['width']!r}", False, image_id=iid)
            continue
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            add("bad_image", f"image id {iid}: file_name must be a non-empty string", False, image_id=iid)
            continue
        if iid in images:
            add("duplicate_image_id", f"image id {iid} appears more than once", False, image_id=iid)
            continue
        images[iid] = img

    category_ids: set[int] = set()
    names: set[str] = set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            add("bad_category", f"categories[{i}] needs an integer 'id' and a string 'name'", False)
            continue
        if cat["id"] in category_ids:
            add("duplicate_category_id", f"category id {cat['id']} appears more than once", False)
        elif cat["name"] in names:
            add("duplicate_category_name", f"category id {cat['id']}: name '{cat['name']}' is used by "
                "another category", False)
        category_ids.add(cat["id"])
        names.add(cat["name"])
    if not data["categories"]:
        add("bad_category", "'categories' is empty", False)

    if image_root is not None:
        root = Path(image_root)
        if not root.is_dir():
            add("missing_image_root", f"image folder {root} does not exist", False)
        else:
            for iid, img in images.items():
                if not (root / img["file_name"]).is_file():
                    add("missing_image", f"image id {iid}: file {root / img['file_name']} does not exist",
                        True, image_id=iid)

    areas: dict[int, int] = {}
    seen_ann: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            add("bad_annotation", f"annotations[{i}] is not an object", False)
            continue
        missing = [k for k in ("id", "image_id", "category_id", "segmentation") if k not in ann]
        if missing:
            add("bad_annotation", f"annotations[{i}] (id {ann.get('id')!r}) is missing key(s) {missing}", False)
            continue
        aid, iid, cid = ann["id"], ann["image_id"], ann["category_id"]
        if not (_is_int(aid) and _is_int(iid) and _is_int(cid)):
            add("bad_annotation", f"annotations[{i}] (id {aid!r}): id, image_id and category_id must be "
                "integers", False)
            continue
        if aid in seen_ann:
            add("duplicate_annotation_id", f"annotation id {aid} appears more than once", False, ann_id=aid)
            continue
        seen_ann.add(aid)
        if iid not in images:
            add("unknown_image_id", f"annotation id {aid}: image_id {iid} is not in 'images'", False,
                image_id=iid, ann_id=aid)
            continue
        if cid not in category_ids:
            add("unknown_category_id", f"annotation id {aid} (image id {iid}): category_id {cid} is not "
                "in 'categories'", False, image_id=iid, ann_id=aid)
            continue
        height, width = images[iid]["height"], images[iid]["width"]
        issue = _check_segmentation(ann["segmentation"], height, width)
        if issue is not None:
            kind, detail, skippable = issue
            add(kind, f"annotation id {aid} (image id {iid}): {detail}", skippable, image_id=iid, ann_id=aid)
            continue
        if "area" in ann and not (_is_finite_number(ann["area"]) and ann["area"] >= 0):
            # evaluation takes a ground truth's size bucket from this field: a bad one drops it silently
            add("bad_area", f"annotation id {aid} (image id {iid}): 'area' must be a number >= 0, got "
                f"{ann['area']!r}", True, image_id=iid, ann_id=aid)
            continue
        area = int(mask_utils.area(segmentation_to_rle(ann["segmentation"], height, width)))
        if area == 0:
            add("zero_area", f"annotation id {aid} (image id {iid}): mask has zero area", True,
                image_id=iid, ann_id=aid)
            continue
        box = ann.get("bbox")
        if (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
                and (box[2] <= 0 or box[3] <= 0)):
            add("zero_size_box", f"annotation id {aid} (image id {iid}): bbox {box} has zero width or height",
                True, image_id=iid, ann_id=aid)
            continue
        areas[aid] = area
    return problems, areas


def summarize_problems(problems: list[Problem], first: int = 5) -> list[str]:
    """One line per problem kind: count, whether it can be skipped, the first few messages."""
    by_kind: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        by_kind[p.kind].append(p)
    lines = []
    for kind, items in by_kind.items():
        how = "one entry" if items[0].skippable else "file structure"
        ids = [str(p.ann_id if p.ann_id is not None else p.image_id) for p in items[:first]
               if (p.ann_id if p.ann_id is not None else p.image_id) is not None]
        lines.append(f"{kind}: {len(items)} ({how})" + (f", first ids: {', '.join(ids)}" if ids else "")
                     + f" — e.g. {items[0].message}")
    return lines


# ---------------------------------------------------------------------------------------------
# Index


def read_image(path: Path, image_id: int, expected_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image file as float32 ``[3, H, W]`` in ``[0, 1]``; DatasetError on any failure."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: image id {image_id}: file not found") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: image id {image_id}: cannot read image ({exc})") from None
    if expected_hw is not None and rgb.shape[:2] != tuple(expected_hw):
        raise DatasetError(f"{path}: image id {image_id}: file is {rgb.shape[0]}x{rgb.shape[1]} but the "
                           f"annotations say {expected_hw[0]}x{expected_hw[1]}")
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)


def _images_under(folder: Path) -> list[Path]:
    """The image files under ``folder`` (by extension, any depth), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from an image file's header; DatasetError if it is not a readable image."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from None
    return height, width


class ImageList:
    """Images only (id, file name, size): what the unlabeled loader gets. Holds no annotations."""

    def __init__(self, image_root: str | os.PathLike, infos: dict[int, tuple[str, int, int]]):
        self.image_root = Path(image_root)
        self._infos = dict(infos)

    @classmethod
    def from_json(cls, json_path: str | os.PathLike, image_root: str | os.PathLike) -> "ImageList":
        """The ``images`` of a COCO JSON that may hold no annotations (COCO's
        image_info_unlabeled2017.json); DatasetError names the file and the bad entry."""
        json_path = Path(json_path)
        data = read_json_file(json_path, "image list file not found")
        infos = {}
        for i, img in enumerate(data.get("images", []) if isinstance(data, dict) else []):
            if not (isinstance(img, dict) and _is_int(img.get("id")) and isinstance(img.get("file_name"), str)
                    and _is_int(img.get("height")) and _is_int(img.get("width"))):
                raise DatasetError(f"{json_path}: images[{i}] needs an integer id, height, width and a file_name")
            if img["id"] in infos:
                raise DatasetError(f"{json_path}: image id {img['id']} appears more than once")
            infos[img["id"]] = (img["file_name"], img["height"], img["width"])
        if not infos:
            raise DatasetError(f"{json_path}: no 'images' listed")
        return cls(image_root, infos)

    def joined(self, other: "ImageList") -> "ImageList":
        """This list and ``other`` as one (file names become paths under each list's root)."""
        clash = sorted(set(self._infos) & set(other._infos))
        if clash:
            raise DatasetError(f"{other.image_root}: image id {clash[0]} is also in {self.image_root} "
                               f"({len(clash)} ids in both)")
        infos = {i: (str(lst.image_root / name), h, w) for lst in (self, other) for i, (name, h, w) in lst._infos.items()}
        return ImageList(Path("/"), infos)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "ImageList":
        """Every image file under ``folder`` (sorted by relative path), ids 1..N."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: image folder does not exist")
        files = _images_under(folder)
        return cls(folder, {i: (path.relative_to(folder).as_posix(), *_image_size(path))
                            for i, path in enumerate(files, start=1)})

    @classmethod
    def from_paths(cls, sources: list[str | os.PathLike]) -> "ImageList":
        """Image files and folders (every image under them, sorted), ids 1..N in that order, each file
        once; file names are the paths as given. DatasetError names a missing path, an unreadable
        image or a folder without images."""
        files: list[Path] = []
        for source in map(Path, sources):
            if source.is_dir():
                found = _images_under(source)
                if not found:
                    raise DatasetError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
                files += found
            elif source.is_file():
                files.append(source)
            else:
                raise DatasetError(f"{source}: no such image file or folder")
        unique = list(dict.fromkeys(files))
        return cls(Path("."), {i: (path.as_posix(), *_image_size(path)) for i, path in enumerate(unique, start=1)})

    @property
    def image_ids(self) -> list[int]:
        return list(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._infos

    def _info(self, image_id: int) -> tuple[str, int, int]:
        try:
            return self._infos[image_id]
        except KeyError:
            raise KeyError(f"image id {image_id} is not in this image list") from None

    def image_info(self, image_id: int) -> dict:
        file_name, height, width = self._info(image_id)
        return {"id": image_id, "file_name": file_name, "height": height, "width": width}

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self._info(image_id)[0]

    def load_image(self, image_id: int) -> torch.Tensor:
        file_name, height, width = self._info(image_id)
        return read_image(self.image_root / file_name, image_id, (height, width))


class CocoIndex:
    """A validated COCO dataset: images, categories and per-image annotations.

    ``annotations(image_id)`` returns the image's usable annotation dicts (crowd ones
    included); ``instances(image_id)`` decodes the non-crowd ones to masks and contiguous labels.
    """

    def __init__(self, json_path: Path, image_root: Path, data: dict, areas: dict[int, int],
                 skip_images: set[int] = frozenset()):
        self.json_path = Path(json_path)
        self.image_root = Path(image_root)
        self.categories = Categories.from_coco(data["categories"])
        self._images = {img["id"]: img for img in data["images"] if img["id"] not in skip_images}
        self.image_ids: list[int] = list(self._images)
        self._anns: dict[int, list[dict]] = defaultdict(list)
        for ann in data["annotations"]:
            if ann["id"] in areas and ann["image_id"] in self._images:
                self._anns[ann["image_id"]].append(ann)
        self._areas = areas

    def __len__(self) -> int:
        return len(self.image_ids)

    def _image(self, image_id: int) -> dict:
        try:
            return self._images[image_id]
        except KeyError:
            raise KeyError(f"{self.json_path}: image id {image_id} is not in this dataset") from None

    def image_info(self, image_id: int) -> dict:
        img = self._image(image_id)
        return {"id": image_id, "file_name": img["file_name"], "height": img["height"], "width": img["width"]}

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self._image(image_id)["file_name"]

    def load_image(self, image_id: int) -> torch.Tensor:
        img = self._image(image_id)
        return read_image(self.image_root / img["file_name"], image_id, (img["height"], img["width"]))

    def annotations(self, image_id: int) -> list[dict]:
        self._image(image_id)
        return list(self._anns.get(image_id, []))

    def area(self, ann_id: int) -> int:
        """Pixel count of an annotation's mask (computed at load, not read from the file)."""
        return self._areas[ann_id]

    def _instance_annotations(self, image_id: int) -> tuple[dict, list[dict], np.ndarray, np.ndarray]:
        img = self._image(image_id)
        anns = [a for a in self._anns.get(image_id, []) if not a.get("iscrowd", 0)]
        index_of = {c: i for i, c in enumerate(self.categories.ids)}
        labels = np.array([index_of[a["category_id"]] for a in anns], dtype=np.int64)
        ann_ids = np.array([a["id"] for a in anns], dtype=np.int64)
        return img, anns, labels, ann_ids

    def instances(self, image_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(masks bool [K,H,W], labels int64 [K], ann_ids int64 [K])`` of the non-crowd instances."""
        img, anns, labels, ann_ids = self._instance_annotations(image_id)
        height, width = img["height"], img["width"]
        masks = np.zeros((len(anns), height, width), dtype=bool)
        for k, ann in enumerate(anns):
            masks[k] = annotation_mask(ann["segmentation"], height, width)
        return torch.from_numpy(masks), torch.from_numpy(labels), torch.from_numpy(ann_ids)

    def instance_rles(self, image_id: int) -> tuple[list[dict], np.ndarray, np.ndarray]:
        """``(COCO RLEs, labels int64 [K], ann_ids int64 [K])`` of the non-crowd instances, not decoded.

        The RLEs' ``counts`` are compressed strings; ``instances`` decodes the same masks.
        """
        img, anns, labels, ann_ids = self._instance_annotations(image_id)
        rles = []
        for ann in anns:
            rle = dict(segmentation_to_rle(ann["segmentation"], img["height"], img["width"]))
            if isinstance(rle["counts"], bytes):
                rle["counts"] = rle["counts"].decode("utf-8")
            rles.append(rle)
        return rles, labels, ann_ids

    def images_only(self, image_ids: list[int] | None = None) -> ImageList:
        """An ``ImageList`` of these images (all if None): file names and sizes, no annotations."""
        ids = self.image_ids if image_ids is None else list(image_ids)
        infos = {}
        for iid in ids:
            img = self._image(iid)
            infos[iid] = (img["file_name"], img["height"], img["width"])
        return ImageList(self.image_root, infos)


def load_coco(json_path: str | os.PathLike, image_root: str | os.PathLike, *, strict: bool = True,
              skip_degenerate: bool = False) -> CocoIndex:
    """Load and validate a COCO instance segmentation JSON whose file names are relative to
    ``image_root``. Raises DatasetError on problems (see the module docstring for ``strict`` and
    ``skip_degenerate``)."""
    json_path = Path(json_path)
    data = read_coco_json(json_path)
    problems, areas = validate_coco(data, image_root)
    if skip_degenerate:
        degenerate = [p for p in problems if p.kind in DEGENERATE_KINDS]
        problems = [p for p in problems if p.kind not in DEGENERATE_KINDS]
        if degenerate:
            kinds = Counter(p.kind for p in degenerate)
            logger.warning("%s: skipped %d annotation(s) with no usable geometry (%s); first ids: %s "
                           "(`pldc data validate` lists them)", json_path, len(degenerate),
                           ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())),
                           ", ".join(str(p.ann_id) for p in degenerate[:5]))
    fatal = [p for p in problems if not p.skippable or strict]
    if fatal:
        more = f" (and {len(problems) - 1} more problem(s); `pldc data validate` lists them)" \
            if len(problems) > 1 else ""
        raise DatasetError(f"{json_path}: {fatal[0].message}{more}")
    skip_images = {p.image_id for p in problems if p.kind == "missing_image"}
    if problems:
        counts = Counter(p.kind for p in problems)
        for kind, n in counts.items():
            first = [p for p in problems if p.kind == kind][:3]
            logger.warning("%s: skipped %d %s (%s): %s", json_path, n,
                           "image(s) and their annotations" if kind == "missing_image" else "annotation(s)",
                           kind, "; ".join(p.message for p in first) + ("; ..." if n > 3 else ""))
    return CocoIndex(json_path, Path(image_root), data, areas, skip_images)


def read_image_ids(json_path: str | os.PathLike) -> list[int]:
    """The image ids of a COCO JSON, in file order, checked for duplicates (no full validation)."""
    data = read_coco_json(json_path)
    ids, seen = [], set()
    for i, img in enumerate(data["images"]):
        iid = img.get("id") if isinstance(img, dict) else None
        if not _is_int(iid):
            raise DatasetError(f"{json_path}: images[{i}] has no integer 'id'")
        if iid in seen:
            raise DatasetError(f"{json_path}: image id {iid} appears more than once")
        seen.add(iid)
        ids.append(iid)
    return ids
