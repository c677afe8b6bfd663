"""A small CLIP trained on the upstream corpus: the embedded stand-in for web-pretrained CLIP.

open_clip's own model code with a small configuration (``SMALL_CLIP``: a ModifiedResNet image
tower at 32 px, a 2-layer text transformer, open_clip's BPE tokenizer) is trained
contrastively on upstream instance crops and their captions. The crops are made exactly as
DICC makes them at training time (``dicc.mask_crops``: the mask's square box, blank outside
the mask), from images at the detector's scale, so CLIP sees at pretraining what it will be
shown when it corrects pseudo-labels. Captions vary their wording (with or without colour and
texture, several templates) so that the shape word carries the class, as in web captions.

The weights are saved in half precision with the model's JSON config beside them; DICC loads
them with ``pldc.clip_model=<config.json>`` and ``pldc.clip_weights=<weights.pt>``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pldc_core.data.upstream import COLOUR_WORDS, TEXTURE_WORDS, colour_name
from pldc_core.method.dicc import caption_words_path, mask_crops
from pldc_core.pretraining.backbone import save_atomic

log = logging.getLogger(__name__)

SMALL_CLIP = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 24, "patch_size": None},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
# OpenAI CLIP's input normalisation, which open_clip uses unless a config says otherwise
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEMPLATES = ("a photo of a {}.", "a {}.", "an image of a {}.", "a picture of a {}.", "{}")


@dataclass
class ClipPretrainConfig:
    image_size: int = 128      # the detector's scale: images are resized so their longer side is this
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    seed: int = 0
    noisy_copies: int = 0      # extra crops per instance cut along a degraded mask (``coarse_masks``)


def register_config(path: str | os.PathLike) -> str:
    """Register an open_clip model config JSON file; returns the model name (the file's stem)."""
    import open_clip

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CLIP model config not found")
    open_clip.add_model_config(path)
    return path.stem


def write_config(path: str | os.PathLike, config: dict = SMALL_CLIP) -> str:
    """Write ``config`` as an open_clip model config and register it; returns the model name."""
    from pldc_core import atomic

    atomic.write_json(path, config)
    return register_config(path)


def at_detector_scale(image: torch.Tensor, masks: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image and its bool masks ``[K, H, W]`` as the detector and DICC see them: resized so the
    longer side is ``image_size`` and zero-padded to a square (masks resized bilinearly, > 0.5)."""
    from pldc_core.data.augment import EvalResize

    padded, (h, w) = EvalResize(image_size)(image)
    small = F.interpolate(masks[:, None].float(), size=(h, w), mode="bilinear", antialias=True,
                          align_corners=False)[:, 0] > 0.5
    canvas = torch.zeros(len(masks), image_size, image_size, dtype=torch.bool)
    canvas[:, :h, :w] = small
    return padded, canvas


def coarse_masks(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Bool masks ``[K, H, W]`` degraded the way a detector's predicted masks are: each is averaged
    down by 2 or 4 (Mask2Former predicts at stride 4), disturbed by smooth noise, brought back up
    bilinearly and cut at a random level between 0.35 and 0.65, then grown or shrunk by a pixel
    with probability 0.3 each. A mask that vanishes is kept as it was."""
    k, h, w = masks.shape
    if k == 0:
        return masks
    out = torch.empty_like(masks)
    for i in range(k):
        factor = (2, 4)[int(torch.randint(2, (1,), generator=generator))]
        soft = F.avg_pool2d(masks[i][None, None].float(), factor, ceil_mode=True)
        sigma = 0.25 * float(torch.rand((), generator=generator))
        soft = soft + sigma * torch.randn(soft.shape, generator=generator)
        soft = F.interpolate(soft, size=(h, w), mode="bilinear", align_corners=False)
        level = 0.35 + 0.3 * float(torch.rand((), generator=generator))
        mask = soft > level
        morph = float(torch.rand((), generator=generator))
        if morph < 0.3:
            mask = F.max_pool2d(mask.float(), 3, stride=1, padding=1) > 0
        elif morph < 0.6:
            mask = ~(F.max_pool2d((~mask).float(), 3, stride=1, padding=1) > 0)
        mask = mask[0, 0]
        out[i] = mask if mask.any() else masks[i]
    return out


def instance_crops(index, image_size: int, crop_size: int, progress: bool = True, noisy_copies: int = 0,
                   seed: int = 0):
    """Every instance of ``index`` as DICC crops it: ``(crops [N, 3, s, s] float16, shape names,
    attributes)``; images first resized so that their longer side is ``image_size``. With
    ``noisy_copies`` each instance is cropped that many more times along a ``coarse_masks`` copy of
    its mask, so CLIP learns to name shapes from masks as imperfect as the teacher's."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    names = index.categories.names
    crops, shapes, attributes = [], [], []
    for image_id in tqdm(index.image_ids, desc="clip crops", unit="img", disable=not progress):
        masks, labels, ann_ids = index.instances(image_id)
        if len(labels) == 0:
            continue
        by_id = {a["id"]: a for a in index.annotations(image_id)}
        image, canvas = at_detector_scale(index.load_image(image_id), masks, image_size)
        keep = canvas.flatten(1).any(1)
        kept = torch.nonzero(keep).flatten().tolist()
        for copy in range(1 + noisy_copies):
            cut = canvas[keep] if copy == 0 else coarse_masks(canvas[keep], generator)
            crops.append(mask_crops(image, cut, crop_size, mean, std).half())
            for k in kept:
                shapes.append(names[int(labels[k])])
                attributes.append(by_id[int(ann_ids[k])].get("attributes"))
    return torch.cat(crops), shapes, attributes


def random_caption(shape: str, attributes: dict | None, rng: np.random.Generator) -> str:
    """A caption of one crop with varied wording: colour and texture each kept with p=0.5."""
    words = []
    if attributes is not None:
        if rng.random() < 0.5:
            words.append(colour_name(attributes["colour"]))
        texture = TEXTURE_WORDS[attributes["texture"]]
        if texture and rng.random() < 0.5:
            words.append(texture)
    words.append(shape)
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(" ".join(words))


def caption_words(shape_names) -> list[str]:
    """Every word a training caption of ``random_caption`` can contain, sorted."""
    words = {w for t in TEMPLATES for w in t.replace("{}", " ").replace(".", " ").split()}
    words |= set(COLOUR_WORDS) | {w for w in TEXTURE_WORDS.values() if w}
    words |= {w for name in shape_names for w in name.split()}
    return sorted(w.lower() for w in words)


class _DropMessage(logging.Filter):
    """Drops the log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def pretrain_clip(train_index, out_weights: str | os.PathLike, out_config: str | os.PathLike,
                  cfg: ClipPretrainConfig, progress: bool = True) -> dict:
    """Train ``SMALL_CLIP`` on the crops and captions of ``train_index``; write the config JSON
    and the half-precision state dict (atomically). Returns ``{"steps", "seconds", "last_loss"}``."""
    import open_clip

    model_name = write_config(out_config)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    untrained = _DropMessage("No pretrained weights loaded")  # open_clip's notice: training from scratch is the point
    logging.getLogger().addFilter(untrained)
    try:
        model = open_clip.create_model(model_name, pretrained=None)
    finally:
        logging.getLogger().removeFilter(untrained)
    tokenizer = open_clip.get_tokenizer(model_name)
    crop_size = SMALL_CLIP["vision_cfg"]["image_size"]
    start = time.perf_counter()
    crops, shapes, attributes = instance_crops(train_index, cfg.image_size, crop_size, progress,
                                               noisy_copies=cfg.noisy_copies, seed=cfg.seed)
    steps_per_epoch = len(crops) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    if total < 1:
        raise ValueError(f"{len(crops)} crops are fewer than one batch of {cfg.batch_size}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=cfg.lr)
    bar = tqdm(total=total, desc="pretrain CLIP", disable=not progress)
    step, loss_value = 0, float("nan")
    model.train()
    for _ in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(len(crops)))
        for batch in order[: steps_per_epoch * cfg.batch_size].split(cfg.batch_size):
            factor = min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = cfg.lr * factor
            images = crops[batch].float()
            if rng.random() < 0.5:
                images = images.flip(-1)
            images = torch.rot90(images, int(rng.integers(4)), dims=(-2, -1))
            texts = tokenizer([random_caption(shapes[i], attributes[i], rng) for i in batch.tolist()])
            image_emb, text_emb, scale = model(images, texts)[:3]
            logits = scale * image_emb @ text_emb.T
            target = torch.arange(len(batch))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            loss_value = loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_atomic(Path(out_weights), state)
    from pldc_core.atomic import write_text

    write_text(caption_words_path(out_config), "\n".join(caption_words(set(shapes))) + "\n")
    return {"steps": step, "seconds": time.perf_counter() - start, "last_loss": loss_value,
            "config": asdict(cfg), "crops": len(crops)}
