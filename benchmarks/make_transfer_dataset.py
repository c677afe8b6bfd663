"""A COCO-format dataset unlike the embedded benchmark, for checking that the quality recipe transfers.

    python benchmarks/make_transfer_dataset.py [--out runs/transfer/glyphs] [--train 2000] [--val 500] [--seed 0]

The embedded benchmark draws geometric shapes named by shape words; the pretrained weights come from a
corpus of such shapes with captions. This dataset shares neither: its eight classes are letters of the
Latin alphabet drawn with a FreeType font (thick strokes, rotated, two look-alike pairs: E/F and O/Q),
named by their NATO spelling words ("echo", "foxtrot" ...), which the embedded CLIP's captions never held,
so DICC turns itself off there (METHOD.md, "DICC and the CLIP's vocabulary"). Backgrounds are colour
gradients with soft blobs (the benchmark's are textures); later letters occlude earlier ones, and the
masks are what stays visible. Writes ``annotations/instances_{train,val}.json`` (RLE masks), the images,
and ``datasets.yaml`` registering the dataset as ``glyphs`` (``--registry`` / ``data.registry_file``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.atomic import write_json, write_text  # noqa: E402

LETTERS = {"A": "alfa", "E": "echo", "F": "foxtrot", "H": "hotel", "O": "oscar", "Q": "quebec", "S": "sierra",
           "X": "xray"}
MIN_VISIBLE = 0.4   # no letter is placed where it would leave one already there less visible than this
MIN_AREA = 24       # nor fewer visible pixels than this


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A two-colour gradient at a random angle with a few blurred blobs."""
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    img = Image.fromarray((a * (1 - t[..., None]) + b * t[..., None]).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 7)):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 30)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.uniform(0, 255, 3)))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 4)))


def _letter_mask(letter: str, size: int, angle: float, stroke: int) -> np.ndarray:
    font = ImageFont.load_default(size=size)
    box = font.getbbox(letter, stroke_width=stroke)
    canvas = Image.new("L", (box[2] - box[0] + 4, box[3] - box[1] + 4), 0)
    ImageDraw.Draw(canvas).text((2 - box[0], 2 - box[1]), letter, font=font, fill=255, stroke_width=stroke,
                                stroke_fill=255)
    return np.asarray(canvas.rotate(angle, resample=Image.BILINEAR, expand=True)) > 127


def make_image(rng: np.random.Generator, classes: list[str]) -> tuple[Image.Image, list[tuple[int, np.ndarray]]]:
    """One image and its (class index, visible mask) list."""
    h, w = int(rng.integers(144, 193)), int(rng.integers(144, 193))
    img = np.asarray(_background(rng, h, w)).copy()
    placed: list[tuple[int, np.ndarray, int]] = []
    for _ in range(rng.integers(2, 8)):
        k = int(rng.integers(len(classes)))
        size = int(rng.integers(18, 72))
        shape = _letter_mask(classes[k], size, rng.uniform(-35, 35), stroke=max(1, size // 12))
        sh, sw = shape.shape
        if sh >= h or sw >= w:
            continue
        y, x = int(rng.integers(0, h - sh)), int(rng.integers(0, w - sw))
        full = np.zeros((h, w), dtype=bool)
        full[y:y + sh, x:x + sw] = shape
        if any((m & ~full).sum() < max(MIN_AREA, MIN_VISIBLE * area) for _, m, area in placed):
            continue  # it would hide too much of a letter already there
        colour = rng.uniform(0, 255, 3)
        while np.abs(colour - img[full].mean(0)).sum() < 120:  # keep it visible on its background
            colour = rng.uniform(0, 255, 3)
        img[full] = colour.astype(np.uint8)
        placed = [(c, m & ~full, area) for c, m, area in placed] + [(k, full, int(full.sum()))]
    return Image.fromarray(img), [(c, m) for c, m, _ in placed]


def write_split(out: Path, split: str, n: int, rng: np.random.Generator, classes: list[str], first_id: int) -> int:
    images, annotations = [], []
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    ann_id = first_id
    for i in range(n):
        img, objects = make_image(rng, classes)
        name = f"{i + 1:06d}.png"
        img.save(folder / name)
        image_id = i + 1
        images.append({"id": image_id, "file_name": name, "height": img.height, "width": img.width})
        for c, m in objects:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": c + 1,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                                "area": int(m.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                                "iscrowd": 0})
            ann_id += 1
    categories = [{"id": i + 1, "name": LETTERS[c], "supercategory": "letter"} for i, c in enumerate(classes)]
    write_json(out / "annotations" / f"instances_{split}.json",
               {"info": {"description": f"glyphs {split}: letters named by their NATO words"},
                "images": images, "annotations": annotations, "categories": categories}, indent=None)
    return ann_id


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "transfer" / "glyphs")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    classes = list(LETTERS)
    rng = np.random.default_rng([args.seed, 2026])
    next_id = write_split(args.out, "train", args.train, rng, classes, 1)
    write_split(args.out, "val", args.val, rng, classes, next_id)
    write_text(args.out / "datasets.yaml", json.dumps({"datasets": {"glyphs": {
        "train_json": "annotations/instances_train.json", "train_images": "train",
        "val_json": "annotations/instances_val.json", "val_images": "val"}}}, indent=2) + "\n")
    print(f"wrote {args.train} train and {args.val} val images of {len(classes)} letter classes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
