"""Experiment configuration: typed sections, loaded from YAML, ``key=value`` overrides, validation.

A config file may name a ``base`` config (another YAML file, relative to itself) whose values it
overrides. Defaults are the paper's hyper-parameters where the paper gives one (docs/METHOD.md).

``config_version`` marks what the keys mean. Version 1 (configs saved in run folders before the
key existed) counted ``model.decoder_layers`` the way transformers does (one more than the
layers built) and predates the options that version 2 added with the paper's values as
defaults; ``from_dict(raw, saved=True)`` converts a version-1 config so that an old run folder
rebuilds the same model with the same behaviour (``upgrade_v1``).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config value, key or file is invalid; the message names it (``key``: the dotted key, when one is at fault)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass
class DataConfig:
    dataset: str = "synthetic"          # a name known to pldc_core.data.registry
    data_root: str = "data"
    registry_file: str | None = None    # YAML with user-registered datasets
    split_file: str | None = None       # default: <data_root>/splits/<dataset>.json
    percent: float = 5.0                # labeled share of the train images
    split_seed: int = 0
    image_size: int = 128               # square training crop (paper: 1024)
    scale_range: list[float] = field(default_factory=lambda: [0.1, 2.0])  # weak view's jitter (Table III)
    eval_images: int | None = None      # evaluate on the first N val images (None: all)
    extra_labeled_json: str | None = None  # curated pseudo-labels exported by the workbench
    extra_unlabeled: str | None = None  # a dataset whose train images join the unlabeled pool (coco2017-unlabeled)
    num_workers: int = 0
    cutout: str = "paper"               # paper (Table III ratios, black fill) | authors (their code's ratios, random fill)
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # strong view's blur, in training-canvas
                                        # pixels (Table III, set at 1024 px; METHOD.md "Teacher and student", views)
    size_buckets: str = "auto"          # auto (the dataset's own) | absolute (COCO's areas) | rescaled (by mean image area)
    test_size: Any = "auto"             # auto (the dataset's own) | train (long side = image_size) | full | [short, max_long]


@dataclass
class ModelConfig:
    backbone: str = "resnet18"          # resnet18 | resnet34 | resnet50 | tiny
    backbone_weights: str | None = None  # local file, or a timm / transformers name (needs the hub)
    init_weights: str | None = None     # a whole-model state dict or run checkpoint (e.g. the upstream detector)
    freeze_backbone: bool = False
    num_queries: int = 20
    hidden_dim: int = 128
    encoder_layers: int = 3
    decoder_layers: int = 3             # transformer decoder layers built (Mask2Former R50: 9)
    num_heads: int = 4
    dim_feedforward: int = 512          # the transformer decoder's FFN width (paper: 2048)
    pixel_decoder_feedforward: int = 1024  # the pixel decoder's FFN width (Mask2Former: 1024)
    train_num_points: int = 1024        # points sampled per mask in the loss (paper: 12544)
    test_top_k: int = 50                # instances kept per image at inference (paper: 100)
    mask_stride: int = 4                # the final masks' grid: 4 (Mask2Former) or 2 (a finer head, METHOD.md)


@dataclass
class TrainConfig:
    seed: int = 0
    burn_in_iters: int = 10000
    max_iters: int = 73750              # total, burn-in included
    batch_labeled: int = 4              # images per step over all processes (batch_scope=global)
    batch_unlabeled: int = 4
    semi_batch_labeled: int | None = None  # labeled images per PL-DC step after burn-in (null: batch_labeled)
    batch_scope: str = "global"         # global (split across ranks, as published) | per_rank
    labeled_strong_view: bool = True    # the student also gets the strong view of each labeled image
    lr: float = 1e-4
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 0.1
    grad_clip: float = 0.01             # Mask2Former clips the full-model grad norm at 0.01
    lr_schedule: str = "poly"           # poly | constant | step
    lr_steps: list[int] = field(default_factory=list)  # step: iterations where the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    warmup_iters: int = 0
    ema_alpha: float = 0.9996
    ema_from_start: bool = False        # keep the EMA model from the first step, burn-in and supervised-only
                                        # runs included (they then evaluate and save it as the teacher)
    student_from_ema: bool = False      # the first PL-DC step's student takes the teacher's weights, the EMA
                                        # of the burn-in (needs ema_from_start; docs/METHOD.md)
    unsup_weight: float = 1.0           # lambda
    amp: bool = True                    # mixed precision on CUDA (bfloat16, or float16 with loss scaling)
    amp_cpu: Any = False                # bfloat16 autocast on the CPU: true | false | auto (only where the CPU
                                        # computes bfloat16 natively, AVX512-BF16 or AMX; float32 elsewhere)
    checkpoint_every: int = 1000
    eval_every: int = 5000
    log_every: int = 20
    keep_checkpoints: int = 3
    device: str = "auto"                # auto | cpu | cuda | cuda:N


@dataclass
class PldcConfig:
    enabled: bool = True                # False: supervised only (no teacher, no unlabeled data)
    filter: str = "ddtf"                # ddtf | coupled
    c_t: float = 0.85
    m_t: float = 0.9
    s_t: float = 0.765                  # coupled threshold of the ablation (0.9 * 0.85)
    dicc: bool = True
    dicc_crop: str = "box"              # box (paper: the whole mask's box) | component (its largest part)
    dicc_unseen_words: str = "disable"  # a CLIP whose caption words miss a class name's: disable DICC | warn
    clip_model: str = "RN50"
    clip_weights: str | None = None     # local checkpoint path, or "openai" (hub; online only)
    clip_template: str = "a photo of a {}."
    dicc_mode: str = "crop"             # crop (the paper: a crop per mask, see dicc_crop) | mask_pool (the
                                        # authors' later code: dense features of a convolutional CLIP averaged
                                        # under each mask)
    class_descriptions: str | None = None  # JSON {class name: [descriptions]}, averaged per class; a class it
                                        # leaves out gets clip_template (null: one prompt per class, the paper)
    mask_area_threshold: int = 5        # drop pseudo-labels whose mask has <= this many pixels (0: keep all)
    pmua: bool = True
    teacher_flip: bool = False          # not in the paper (false: the paper). The teacher also labels each
                                        # image's mirror; the two views' queries are paired and averaged
    dicc_partial: bool = False          # not in the paper (false: the paper). Where CLIP's most likely class is
                                        # not the class DICC gives a pseudo-label, the class term accepts either
                                        # of the two (a partial label) instead of that class alone
    ignore_c: float | None = None       # not in the paper (null: off, the paper). Teacher queries the filter drops
                                        # but whose class quality is >= this become "ignore" targets: the student
                                        # query matched to one gets no loss, instead of being taught "no object"


@dataclass
class RecordsConfig:
    enabled: bool = True
    num_images: int = 64                # fixed, seeded sample of unlabeled images per checkpoint
    every: int | None = None            # default: at every checkpoint
    seed: int = 0


CONFIG_VERSION = 2


@dataclass
class ExperimentConfig:
    config_version: int = CONFIG_VERSION
    name: str = "experiment"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pldc: PldcConfig = field(default_factory=PldcConfig)
    records: RecordsConfig = field(default_factory=RecordsConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' configs form a cycle")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = raw.pop("base", None)
    if base is not None:
        raw = _merge(_read_yaml(path.parent / base, seen + (path.resolve(),)), raw)
    return raw


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars)."""
    raw = json.loads(json.dumps(raw))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. pldc.c_t=0.8")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return raw


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'the config'}: expected a mapping, got {type(values).__name__}", where or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [str(k) for k in sorted(set(values) - set(fields), key=str)]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if where:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}{hint}; known: {', '.join(fields)}",
                              f"{where}.{unknown[0]}")
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} at the top level{hint}; known: "
                          f"{', '.join(fields)}", str(unknown[0]))
    kwargs = {}
    for name, value in values.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.type == "Any":
            kwargs[name] = value  # checked by validate()
        elif dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}" if where else name)
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str) -> Any:
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}", where)
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}", where)
        return value
    if isinstance(default, float):
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot in the mantissa) as a string; it is a number to a user
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}", where)
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}", where)
    return value


def validate(cfg: ExperimentConfig, check_files: bool = True) -> ExperimentConfig:
    """Check ranges and choices; raise ConfigError naming the key. ``check_files``: also read the
    files a key names whose content can be checked without the dataset (``pldc.class_descriptions``)."""
    def check(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{key}: {msg}", key)

    p, t, d, m = cfg.pldc, cfg.train, cfg.data, cfg.model
    for key in ("c_t", "m_t", "s_t"):
        v = getattr(p, key)
        check(0.0 <= v <= 1.0, f"pldc.{key}", f"must be in [0, 1], got {v}")
    check(p.filter in ("ddtf", "coupled"), "pldc.filter", f"must be 'ddtf' or 'coupled', got {p.filter!r}")
    check(p.dicc_crop in ("box", "component"), "pldc.dicc_crop", f"must be 'box' or 'component', got {p.dicc_crop!r}")
    check(not p.dicc_partial or p.dicc, "pldc.dicc_partial", "needs pldc.dicc: true (CLIP gives the second class)")
    check(p.dicc_unseen_words in ("disable", "warn"), "pldc.dicc_unseen_words",
          f"must be 'disable' or 'warn', got {p.dicc_unseen_words!r}")
    check(0.0 <= t.ema_alpha < 1.0, "train.ema_alpha", f"must be in [0, 1), got {t.ema_alpha}")
    check(not t.student_from_ema or t.ema_from_start, "train.student_from_ema",
          "needs train.ema_from_start: true (without it the teacher starts as a copy of the student)")
    check(t.unsup_weight >= 0, "train.unsup_weight", f"must be >= 0, got {t.unsup_weight}")
    check(t.lr > 0 and math.isfinite(t.lr), "train.lr", f"must be a number > 0, got {t.lr}")
    for key in ("weight_decay", "backbone_lr_mult", "grad_clip"):
        v = getattr(t, key)
        check(v >= 0 and math.isfinite(v), f"train.{key}", f"must be a number >= 0, got {v}"
              + (" (0 turns clipping off)" if key == "grad_clip" else ""))
    for key in ("log_every", "keep_checkpoints"):
        check(getattr(t, key) >= 1, f"train.{key}", f"must be >= 1, got {getattr(t, key)}")
    check(t.warmup_iters >= 0, "train.warmup_iters", f"must be >= 0, got {t.warmup_iters}")
    check(t.max_iters > 0, "train.max_iters", f"must be > 0, got {t.max_iters}")
    check(0 <= t.burn_in_iters <= t.max_iters, "train.burn_in_iters",
          f"must be in [0, max_iters={t.max_iters}], got {t.burn_in_iters}")
    check(t.batch_labeled >= 1, "train.batch_labeled", "must be >= 1")
    check(t.batch_unlabeled >= 1 or not p.enabled, "train.batch_unlabeled", "must be >= 1 with pldc.enabled")
    check(t.semi_batch_labeled is None or (isinstance(t.semi_batch_labeled, int) and t.semi_batch_labeled >= 1),
          "train.semi_batch_labeled", f"must be >= 1 (or null: train.batch_labeled), got {t.semi_batch_labeled!r}")
    check(t.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
    check(t.eval_every >= 1, "train.eval_every", "must be >= 1")
    check(isinstance(t.amp_cpu, bool) or t.amp_cpu == "auto", "train.amp_cpu",
          f"must be true, false or auto, got {t.amp_cpu!r}")
    check(t.lr_schedule in ("poly", "constant", "step"), "train.lr_schedule", "must be 'poly', 'constant' or 'step'")
    check(isinstance(t.lr_steps, list) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                               for v in t.lr_steps) and t.lr_steps == sorted(t.lr_steps),
          "train.lr_steps", f"must be increasing positive iterations, got {t.lr_steps!r}")
    check(t.lr_schedule != "step" or bool(t.lr_steps), "train.lr_steps", "lr_schedule=step needs at least one step")
    check(0 < t.lr_gamma <= 1, "train.lr_gamma", f"must be in (0, 1], got {t.lr_gamma}")
    check(t.batch_scope in ("global", "per_rank"), "train.batch_scope",
          f"must be 'global' or 'per_rank', got {t.batch_scope!r}")
    check(d.cutout in ("paper", "authors"), "data.cutout", f"must be 'paper' or 'authors', got {d.cutout!r}")
    check(d.size_buckets in ("auto", "absolute", "rescaled"), "data.size_buckets",
          f"must be 'auto', 'absolute' or 'rescaled', got {d.size_buckets!r}")
    check(d.test_size in ("auto", "train", "full") or (
        isinstance(d.test_size, list) and len(d.test_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in d.test_size)
        and d.test_size[0] <= d.test_size[1]), "data.test_size",
        f"must be auto, train, full or [short, max_long] with short <= max_long, got {d.test_size!r}")
    check(p.dicc_mode in ("crop", "mask_pool"), "pldc.dicc_mode", f"must be 'crop' or 'mask_pool', got {p.dicc_mode!r}")
    if check_files and p.class_descriptions is not None:
        from pldc_core.method.class_texts import ClassDescriptionsError, read_class_descriptions

        try:
            read_class_descriptions(p.class_descriptions)
        except ClassDescriptionsError as exc:
            raise ConfigError(f"pldc.class_descriptions: {exc}", "pldc.class_descriptions") from None
    check(p.ignore_c is None or 0.0 <= p.ignore_c <= 1.0, "pldc.ignore_c",
          f"must be in [0, 1] or null (off), got {p.ignore_c}")
    check(p.mask_area_threshold >= 0, "pldc.mask_area_threshold", f"must be >= 0, got {p.mask_area_threshold}")
    check(0 < d.percent <= 100, "data.percent", f"must be in (0, 100], got {d.percent}")
    check(d.eval_images is None or d.eval_images >= 1, "data.eval_images",
          f"must be >= 1 (or null for every val image), got {d.eval_images}")
    check(d.num_workers >= 0, "data.num_workers", f"must be >= 0 (0: load in the main process), got {d.num_workers}")
    check(isinstance(d.scale_range, (list, tuple)) and len(d.scale_range) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.scale_range)
          and 0 < d.scale_range[0] <= d.scale_range[1], "data.scale_range",
          f"must be [low, high] with 0 < low <= high, got {d.scale_range!r}")
    check(isinstance(d.blur_sigma, (list, tuple)) and len(d.blur_sigma) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.blur_sigma)
          and 0 < d.blur_sigma[0] <= d.blur_sigma[1], "data.blur_sigma",
          f"must be [low, high] pixels with 0 < low <= high, got {d.blur_sigma!r}")
    check(d.image_size >= 32 and d.image_size % 32 == 0, "data.image_size",
          f"must be a multiple of 32 and >= 32, got {d.image_size}")
    check(m.mask_stride in (2, 4), "model.mask_stride", f"must be 4 or 2, got {m.mask_stride}")
    check(m.backbone in ("tiny", "resnet18", "resnet34", "resnet50"), "model.backbone",
          f"unknown backbone {m.backbone!r} (tiny, resnet18, resnet34, resnet50)")
    for key in ("num_queries", "hidden_dim", "encoder_layers", "decoder_layers", "num_heads", "dim_feedforward",
                "pixel_decoder_feedforward", "train_num_points", "test_top_k"):
        check(getattr(m, key) >= 1, f"model.{key}", f"must be >= 1, got {getattr(m, key)}")
    check(m.hidden_dim % m.num_heads == 0, "model.hidden_dim", "must be divisible by model.num_heads")
    r = cfg.records
    check(r.num_images >= 1, "records.num_images", f"must be >= 1, got {r.num_images}")
    check(r.every is None or r.every >= 1, "records.every",
          f"must be >= 1 (or null: at every checkpoint), got {r.every}")
    return cfg


# What a version-1 config meant for each key version 2 added (today's behaviour before it)
_V1_NEW_KEYS = {
    ("train", "batch_scope"): "per_rank",
    ("train", "labeled_strong_view"): False,
    ("pldc", "mask_area_threshold"): 0,
    ("data", "size_buckets"): "rescaled",
    ("data", "test_size"): "train",
}


def upgrade_v1(raw: dict) -> dict:
    """A version-1 config as version 2 with the same model and behaviour: ``decoder_layers`` was
    transformers' count (layers built + 1), the pixel decoder's FFN had ``dim_feedforward``'s
    width, and the options added since keep their old behaviour."""
    raw = json.loads(json.dumps(raw))
    model = raw.setdefault("model", {})
    model["decoder_layers"] = int(model.get("decoder_layers", 4)) - 1
    model.setdefault("pixel_decoder_feedforward", model.get("dim_feedforward", 512))
    for (section, key), value in _V1_NEW_KEYS.items():
        raw.setdefault(section, {}).setdefault(key, value)
    raw["config_version"] = CONFIG_VERSION
    return raw


def from_dict(raw: dict, saved: bool = False) -> ExperimentConfig:
    """Build and validate a config. ``saved``: ``raw`` was written by this project (a run folder's
    config.yaml, a checkpoint), where a missing ``config_version`` means version 1, and files the
    config names are not read (a run folder stays readable where they are gone)."""
    version = raw.get("config_version", 1 if saved else CONFIG_VERSION)
    if version == 1:
        raw = upgrade_v1(raw)
    elif version != CONFIG_VERSION:
        raise ConfigError(f"config_version: {version!r} is not known to this version of pldc "
                          f"(1 or {CONFIG_VERSION})", "config_version")
    return validate(_build(ExperimentConfig, raw, ""), check_files=not saved)


def _set_by_override(key: str, overrides: list[str]) -> bool:
    """Whether ``key`` (dotted) or a key inside it is one that an override sets."""
    for item in overrides:
        name = item.split("=", 1)[0].strip()
        if name == key or name.startswith(key + "."):
            return True
    return False


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                saved: bool = False) -> ExperimentConfig:
    """Load a YAML config (with its ``base`` chain), apply overrides, validate. ``saved``: the
    file is a run folder's config.yaml (see ``from_dict``).

    A ConfigError about a key the file set (not an override) starts with the file's path.
    """
    overrides = list(overrides or [])
    raw = _read_yaml(Path(path)) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    try:
        return from_dict(raw, saved=saved)
    except ConfigError as exc:
        if path is None or (exc.key is not None and _set_by_override(exc.key, overrides)):
            raise
        raise ConfigError(f"{path}: {exc}", exc.key) from None


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    from .atomic import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
