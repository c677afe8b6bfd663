"""Named datasets: built-in entries plus user datasets registered in a YAML file.

Built-ins (paths under ``data_root``):

- ``synthetic``: ``synthetic/{train,val}`` and ``synthetic/annotations/instances_{train,val}.json``
  (``pldc data make-synthetic``);
- ``upstream``: the same layout under ``upstream/`` (``pldc data make-upstream``), the corpus the
  embedded pretrained weights come from;
- ``coco2017``: ``coco/{train2017,val2017}`` and ``coco/annotations/instances_{train,val}2017.json``;
- ``cityscapes``: ``cityscapes/leftImg8bit/{train,val}`` and
  ``cityscapes/annotations/instancesonly_filtered_gtFine_{train,val}.json``
  (``pldc data convert-cityscapes``);
- ``coco2017-unlabeled``: ``coco/unlabeled2017`` and ``coco/annotations/image_info_unlabeled2017.json``,
  images only: the extra unlabeled pool of the paper's 100% setting (``data.extra_unlabeled``).

Each dataset also says how it is evaluated (``data.size_buckets`` / ``data.test_size`` "auto"):
COCO's absolute small/medium/large areas everywhere except the embedded synthetic datasets,
whose small images ask for limits rescaled by the mean image area; at test time COCO is resized
to short side 800 / long side <= 1333, Cityscapes is kept at full resolution, the others are
resized as in training (long side = image_size).

A registry file (``DATA_ROOT/datasets.yaml`` unless another is given) adds datasets::

    datasets:
      my_parts:
        train_json: parts/annotations/train.json   # relative paths: to the YAML file's folder
        train_images: parts/images
        val_json: parts/annotations/val.json       # val_* are optional
        val_images: parts/images
        size_buckets: absolute                     # optional: absolute (default) | rescaled
        test_size: train                           # optional: train (default) | full | [short, max_long]
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from pldc_core.data.coco import CocoIndex, DatasetError, load_coco

BUILTIN_DATASETS = ("synthetic", "upstream", "coco2017", "cityscapes", "coco2017-unlabeled")
REGISTRY_FILE_NAME = "datasets.yaml"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's images and COCO annotation files are."""

    name: str
    image_root_train: Path
    train_json: Path
    image_root_val: Path | None
    val_json: Path | None
    size_buckets: str = "absolute"      # how this dataset's AP size buckets are set (module docstring)
    test_size: object = "train"         # its test-time resize (data.augment.TestResize)
    make_command: str | None = None     # how to make a generated built-in dataset that is not there yet

    def load_train(self, strict: bool = True, skip_degenerate: bool = False) -> CocoIndex:
        """The training set, validated (``coco.load_coco``, which explains both flags)."""
        self._check_made(self.train_json)
        return load_coco(self.train_json, self.image_root_train, strict=strict, skip_degenerate=skip_degenerate)

    def load_val(self, strict: bool = True, skip_degenerate: bool = False) -> CocoIndex:
        """The validation set, validated; DatasetError if the dataset has none."""
        if self.val_json is None or self.image_root_val is None:
            raise DatasetError(f"dataset '{self.name}' has no validation set registered")
        self._check_made(self.val_json)
        return load_coco(self.val_json, self.image_root_val, strict=strict, skip_degenerate=skip_degenerate)

    def _check_made(self, json_path: Path) -> None:
        if self.make_command and not Path(json_path).exists():
            raise DatasetError(f"{json_path}: annotation file not found; the '{self.name}' dataset is generated: "
                               f"make it with `{self.make_command}`")


def _builtin(name: str, root: Path) -> DatasetSpec:
    if name in ("synthetic", "upstream"):
        base = root / name
        make = f"pldc data make-{name} --out {shlex.quote(str(base))}"
        return DatasetSpec(name, base / "train", base / "annotations" / "instances_train.json",
                           base / "val", base / "annotations" / "instances_val.json", size_buckets="rescaled",
                           make_command=make)
    if name == "coco2017":
        base = root / "coco"
        return DatasetSpec(name, base / "train2017", base / "annotations" / "instances_train2017.json",
                           base / "val2017", base / "annotations" / "instances_val2017.json", test_size=(800, 1333))
    if name == "coco2017-unlabeled":
        base = root / "coco"
        return DatasetSpec(name, base / "unlabeled2017", base / "annotations" / "image_info_unlabeled2017.json",
                           None, None)
    if name == "cityscapes":
        base = root / "cityscapes"
        return DatasetSpec(name, base / "leftImg8bit" / "train", cityscapes_json(base, "train"),
                           base / "leftImg8bit" / "val", cityscapes_json(base, "val"), test_size="full")
    raise KeyError(name)


def cityscapes_json(cityscapes_root: str | os.PathLike, split: str) -> Path:
    """Where ``convert-cityscapes`` writes a split's COCO file by default."""
    return Path(cityscapes_root) / "annotations" / f"instancesonly_filtered_gtFine_{split}.json"


def default_split_file(name: str, data_root: str | os.PathLike = "data") -> Path:
    """Where ``pldc data split`` writes a dataset's semi-supervised splits by default."""
    return Path(data_root) / "splits" / f"{name}.json"


def split_file_of(data_cfg) -> Path:
    """The split file a config's ``data`` section names: ``data.split_file``, else the default one."""
    if data_cfg.split_file:
        return Path(data_cfg.split_file)
    return default_split_file(data_cfg.dataset, data_cfg.data_root)


def _registry_path(data_root: Path, registry_file: str | os.PathLike | None) -> Path | None:
    if registry_file is not None:
        path = Path(registry_file)
        if not path.is_file():
            raise DatasetError(f"{path}: dataset registry file not found")
        return path
    default = data_root / REGISTRY_FILE_NAME
    return default if default.is_file() else None


def read_registry(path: str | os.PathLike) -> dict[str, DatasetSpec]:
    """The datasets of a registry YAML file (format in the module docstring)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DatasetError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise DatasetError(f"{path}: needs a top-level mapping 'datasets: {{name: {{train_json, "
                           "train_images, val_json, val_images}}}}'")
    base = path.parent
    known = {"train_json", "train_images", "val_json", "val_images", "size_buckets", "test_size"}

    def resolve(value) -> Path:
        return base / Path(os.path.expanduser(str(value)))

    specs = {}
    for name, entry in data["datasets"].items():
        name = str(name)
        if name in BUILTIN_DATASETS:
            raise DatasetError(f"{path}: dataset '{name}' would shadow the built-in dataset of that name")
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: dataset '{name}' must be a mapping of paths")
        unknown = set(entry) - known
        if unknown:
            raise DatasetError(f"{path}: dataset '{name}': unknown key(s) {sorted(unknown)} "
                               f"(allowed: {sorted(known)})")
        for key in ("train_json", "train_images"):
            if not entry.get(key):
                raise DatasetError(f"{path}: dataset '{name}' is missing '{key}'")
        if bool(entry.get("val_json")) != bool(entry.get("val_images")):
            raise DatasetError(f"{path}: dataset '{name}': give both val_json and val_images, or neither")
        buckets, test_size = entry.get("size_buckets", "absolute"), entry.get("test_size", "train")
        if buckets not in ("absolute", "rescaled"):
            raise DatasetError(f"{path}: dataset '{name}': size_buckets must be absolute or rescaled, got {buckets!r}")
        if not (test_size in ("train", "full") or (isinstance(test_size, list) and len(test_size) == 2)):
            raise DatasetError(f"{path}: dataset '{name}': test_size must be train, full or [short, max_long], "
                               f"got {test_size!r}")
        specs[name] = DatasetSpec(name, resolve(entry["train_images"]), resolve(entry["train_json"]),
                                  resolve(entry["val_images"]) if entry.get("val_images") else None,
                                  resolve(entry["val_json"]) if entry.get("val_json") else None,
                                  size_buckets=buckets, test_size=tuple(test_size) if isinstance(test_size, list)
                                  else test_size)
    return specs


def list_datasets(data_root: str | os.PathLike = "data", registry_file: str | os.PathLike | None = None) -> list[str]:
    """Names of the built-in and registered datasets."""
    path = _registry_path(Path(data_root), registry_file)
    return list(BUILTIN_DATASETS) + (list(read_registry(path)) if path else [])


def get_dataset(name: str, data_root: str | os.PathLike = "data",
                registry_file: str | os.PathLike | None = None) -> DatasetSpec:
    """The ``DatasetSpec`` of a built-in or registered dataset (files are checked when loaded)."""
    root = Path(data_root)
    if name in BUILTIN_DATASETS:
        return _builtin(name, root)
    path = _registry_path(root, registry_file)
    registered = read_registry(path) if path else {}
    if name not in registered:
        where = f" (registry: {path})" if path else f" (no registry file; see {root / REGISTRY_FILE_NAME})"
        raise DatasetError(f"unknown dataset '{name}'; known: {', '.join(list(BUILTIN_DATASETS) + list(registered))}"
                           + where)
    return registered[name]


def eval_protocol(data_cfg, spec: DatasetSpec) -> tuple[str, object]:
    """``(size_buckets, test_size)`` of a config's ``data`` section, "auto" resolved by ``spec``."""
    buckets = spec.size_buckets if data_cfg.size_buckets == "auto" else data_cfg.size_buckets
    test_size = spec.test_size if data_cfg.test_size == "auto" else data_cfg.test_size
    return buckets, tuple(test_size) if isinstance(test_size, list) else test_size
