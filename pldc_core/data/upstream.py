"""The upstream corpus: the embedded stand-in for the web-scale data that pretrained weights come from.

The paper's supervised baseline is strong only because its backbone was pretrained on ImageNet,
and DICC works because CLIP was pretrained on web image-caption pairs. Neither can be
downloaded everywhere, so the project pretrains its own small analogues on this corpus:

- a broader vocabulary than the benchmark: 30 shapes (the benchmark's 10 among them, as
  ImageNet's classes include many of COCO's), uniform shares, 2-8 instances per image;
- drawn by the same renderer as the benchmark (random colours and textures on textured,
  cluttered backgrounds) but from its own seed space, so no upstream image is a benchmark
  image; half of the images are plain (untextured objects, no background pattern or
  clutter): from scratch, shapes under random textures are learned only very slowly, and the
  plain half gives the first signal (docs/METHOD.md, "Embedded upstream");
- a caption per instance ("a red striped hexagon"), made from the colour and texture the
  renderer drew, for the small CLIP.

Written as a COCO dataset (``annotations/instances_{train,val}.json``, each annotation with
``attributes`` and ``caption``), so every tool that reads COCO reads it.
"""
from __future__ import annotations

import colorsys
import os

from pldc_core.data.synthetic import SHAPES, SYNTHETIC_CLASSES, SceneSpec, ShapeClass, write_scenes

# Seeds of upstream images start with this word; the benchmark's start with its seed (0, 1, ...),
# so the two never draw the same image.
UPSTREAM_NAMESPACE = 7_340_033

_GROUPS = {
    "round": ("disk", "ellipse", "ring", "semicircle", "crescent", "arc", "teardrop", "heart", "capsule"),
    "polygon": ("square", "rounded square", "triangle", "pentagon", "hexagon", "octagon", "diamond", "trapezoid",
                "parallelogram", "kite", "frame"),
    "stroke": ("cross", "bar", "arrow", "L-shape", "T-shape", "chevron"),
    "star": ("five-point star", "six-point star", "four-point star", "eight-point star"),
}
UPSTREAM_CLASSES: tuple[ShapeClass, ...] = tuple(
    ShapeClass(i + 1, name, next(g for g, members in _GROUPS.items() if name in members), 1.0)
    for i, name in enumerate(SHAPES))
UPSTREAM_SCENES = SceneSpec(UPSTREAM_CLASSES, instances=(2, 8),
                            size_mix=(("small", 0.15), ("medium", 0.45), ("large", 0.40)), plain_fraction=0.5)
assert {c.name for c in SYNTHETIC_CLASSES} <= {c.name for c in UPSTREAM_CLASSES}
assert sum(len(v) for v in _GROUPS.values()) == len(SHAPES)

_HUES = ((15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"),
         (290, "purple"), (335, "pink"), (360, "red"))
TEXTURE_WORDS = {"plain": "", "striped": "striped", "checked": "checked", "gradient": "shaded",
                  "mottled": "speckled"}


COLOUR_WORDS = ("black", "white", "grey", *dict.fromkeys(name for _, name in _HUES))


def colour_name(rgb) -> str:
    """A basic colour word for an RGB triple in [0, 1]."""
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    if v < 0.25:
        return "black"
    if s < 0.25:
        return "white" if v > 0.8 else "grey"
    degrees = h * 360
    return next(name for limit, name in _HUES if degrees < limit)


def caption(shape: str, attributes: dict) -> str:
    """``a <colour> [<texture>] <shape>``, e.g. "a red striped hexagon"."""
    words = [colour_name(attributes["colour"]), TEXTURE_WORDS[attributes["texture"]], shape]
    text = " ".join(w for w in words if w)
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"


def generate_upstream(out_dir: str | os.PathLike, n_train: int = 6000, n_val: int = 500, seed: int = 0,
                      min_size: int = 128, max_size: int = 160, workers: int | None = None,
                      progress: bool = True) -> dict:
    """Write the upstream corpus to ``out_dir`` (replacing an earlier one as a whole).

    Same layout and return value as ``synthetic.generate_synthetic``; every annotation also has
    ``attributes`` (``colour`` RGB, ``texture``) and a ``caption``.
    """
    if n_train < 1 or n_val < 0:
        raise ValueError(f"need n_train >= 1 and n_val >= 0, got {n_train}, {n_val}")
    return write_scenes(out_dir, UPSTREAM_SCENES,
                         {"train": ([UPSTREAM_NAMESPACE, seed, 0], n_train),
                          "val": ([UPSTREAM_NAMESPACE, seed, 1], n_val)},
                         min_size=min_size, max_size=max_size, description="PL-DC Workbench upstream corpus",
                         marker={"generator": "pldc_core.data.upstream", "seed": seed},
                         extra_fields=lambda name, attrs: {"attributes": attrs, "caption": caption(name, attrs)},
                         workers=workers, progress=progress)

