"""Upstream backbone pretraining: dense (per-pixel) shape classification of whole upstream scenes.

The stand-in for an ImageNet-pretrained backbone. It is trained on whole scenes rather than
centred crops on purpose: the detector reads class evidence from features *under each object's
mask in a scene* (its queries attend there), and features learned on centred crops did not carry
class information into scenes (docs/METHOD.md, "Embedded upstream"). Every stage (strides 4 to
32) gets a 1x1 classification head, so each scale the pixel decoder uses carries class evidence.

The result is a state dict of transformers' ``ResNetBackbone``, the format
``model.backbone_weights`` loads. Training saves a resumable checkpoint every
``checkpoint_every`` steps next to the output; a killed run continues from it.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pldc_core import atomic
from pldc_core.jsonl import append_json_lines, drop_lines_after
from pldc_core.model.mask2former import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, resnet_config

log = logging.getLogger(__name__)

IGNORE = 255  # label of padding pixels


@dataclass
class BackbonePretrainConfig:
    backbone: str = "tiny"
    image_size: int = 128
    scale_range: tuple[float, float] = (0.5, 1.5)
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1.5e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    seed: int = 0
    checkpoint_every: int = 250


class DenseShapeClassifier(nn.Module):
    """A ResNet backbone with, on each stage, a 1x1 per-pixel classifier (``num_classes`` +
    background) and a linear classifier of the stage's features averaged under an instance's mask."""

    def __init__(self, backbone: str, num_classes: int):
        super().__init__()
        from transformers import ResNetBackbone
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        self.backbone = ResNetBackbone(resnet_config(backbone))
        hf_logging.set_verbosity(verbosity)
        widths = BACKBONES[backbone][1]
        self.heads = nn.ModuleList(nn.Conv2d(w, num_classes + 1, 1) for w in widths)
        self.instance_heads = nn.ModuleList(nn.Linear(w, num_classes) for w in widths)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, masks: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-stage pixel logits ``[B, N+1, H/s, W/s]`` (strides 4, 8, 16, 32) and per-stage
        instance logits ``[K, N]`` of ``masks`` (one bool ``[K_b, H, W]`` per image, concatenated)."""
        maps = self.backbone((images - self.mean) / self.std).feature_maps
        pixel = [head(f) for head, f in zip(self.heads, maps)]
        instance = [head(mask_pooled(f, masks)) for head, f in zip(self.instance_heads, maps)]
        return pixel, instance


def mask_pooled(features: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """``[K, C]``: each instance's mean feature under its mask (area-resampled to the map's grid)."""
    pooled = []
    for fmap, m in zip(features, masks):
        if len(m) == 0:
            continue
        weight = F.adaptive_avg_pool2d(m[:, None].float(), fmap.shape[-2:])[:, 0]
        weight = weight / weight.sum(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        pooled.append(torch.einsum("khw,chw->kc", weight, fmap))
    return torch.cat(pooled) if pooled else features.new_zeros(0, features.shape[1])


def semantic_targets(masks: list[torch.Tensor], labels: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
    """``[B, S, S]`` long: ``label + 1`` under each instance, 0 on background, IGNORE on padding."""
    out = torch.zeros(valid.shape, dtype=torch.long)
    for b, (m, lab) in enumerate(zip(masks, labels)):
        for k in range(len(lab)):  # masks of one image do not overlap (occlusion is resolved)
            out[b][m[k]] = int(lab[k]) + 1
    out[~valid] = IGNORE
    return out


def instance_loss(logits: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mean over stages of the instances' cross-entropy, and the stride-16 head's accuracy."""
    if len(labels) == 0:
        return logits[0].sum() * 0.0, float("nan")
    loss = torch.stack([F.cross_entropy(lg, labels) for lg in logits]).mean()
    return loss, float((logits[2].argmax(1) == labels).float().mean())


def dense_loss(logits: list[torch.Tensor], target: torch.Tensor,
               background_weight: float = 0.3) -> torch.Tensor:
    """Mean over stages of the per-pixel cross-entropy at each stage's resolution (labels by
    nearest-exact downsampling).

    Background pixels (most of a scene) weigh ``background_weight``: the point is the objects'
    classes, and at full weight the heads first learn to call everything background."""
    weight = torch.ones(logits[0].shape[1], device=logits[0].device)
    weight[0] = background_weight
    losses = []
    for lg in logits:
        t = F.interpolate(target[:, None].float(), size=lg.shape[-2:], mode="nearest-exact")[:, 0].long()
        losses.append(F.cross_entropy(lg, t, weight=weight, ignore_index=IGNORE))
    return torch.stack(losses).mean()


def save_atomic(path: Path, obj) -> None:
    """``torch.save`` to a temporary in the same folder, then rename."""
    with atomic.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def pretrain_backbone(train_index, out_path: str | os.PathLike, cfg: BackbonePretrainConfig,
                      progress: bool = True, stop_at: int | None = None) -> dict:
    """Train ``DenseShapeClassifier`` on every image of ``train_index`` and write the backbone's
    state dict to ``out_path`` (atomically). Resumes from ``out_path``'s checkpoint if present;
    ``stop_at`` pauses after that many steps with a checkpoint (the weights are written at the end).
    Returns ``{"steps", "seconds", "last_loss", "last_instance_accuracy"}``; every 100 steps a
    JSON line goes to ``<out_path>.log.jsonl`` (the learning curve)."""
    from pldc_core.data.augment import TrainAugment
    from pldc_core.data.loader import LabeledDataset, infinite_batches

    out_path = Path(out_path)
    ckpt_path = out_path.with_name(out_path.name + ".resume.pt")
    log_path = out_path.with_name(out_path.name + ".log.jsonl")
    torch.manual_seed(cfg.seed)
    model = DenseShapeClassifier(cfg.backbone, len(train_index.categories))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if ckpt_path.is_file():
        try:
            state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as exc:  # torch raises several types for a damaged file
            raise ValueError(f"{ckpt_path}: unreadable checkpoint ({type(exc).__name__}: {exc}); "
                             "remove it to start over") from exc
        if state["config"] != asdict(cfg):
            raise ValueError(f"{ckpt_path}: a checkpoint of another configuration; remove it to start over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        torch.set_rng_state(state["rng"])
        drop_lines_after(log_path, step, key="step")  # steps a killed run logged after its last checkpoint come again
        log.info("resuming backbone pretraining at step %d", step)

    dataset = LabeledDataset(train_index, train_index.image_ids, TrainAugment(cfg.image_size, cfg.scale_range))
    batches = infinite_batches(dataset, cfg.batch_size, seed=cfg.seed, start_iter=step)
    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain backbone", disable=not progress)
    start, loss_value, acc = time.perf_counter(), float("nan"), float("nan")
    model.train()
    last = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    while step < last:
        factor = min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = cfg.lr * factor
        samples = next(batches)
        images = torch.stack([s.image for s in samples])
        masks = [s.masks for s in samples]
        target = semantic_targets(masks, [s.labels for s in samples], torch.stack([s.meta["valid"] for s in samples]))
        pixel_logits, instance_logits = model(images, masks)
        loss_pixel = dense_loss(pixel_logits, target)
        loss_instance, acc = instance_loss(instance_logits, torch.cat([s.labels for s in samples]))
        loss = loss_pixel + loss_instance
        if not torch.isfinite(loss):
            raise FloatingPointError(f"backbone pretraining: the loss is {loss.item()} at step {step + 1}; "
                                     f"the last checkpoint ({ckpt_path}) is kept")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_value = loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", instance_acc=f"{acc:.2f}")
        if step % 100 == 0:
            append_json_lines(log_path, [{"step": step, "loss": loss_value, "loss_pixel": loss_pixel.item(),
                                          "loss_instance": loss_instance.item(), "instance_accuracy_s16": acc,
                                          "seconds": time.perf_counter() - start}])
        if step % cfg.checkpoint_every == 0 or step == last:
            save_atomic(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "rng": torch.get_rng_state(), "config": asdict(cfg)})
    bar.close()
    if step == cfg.steps:
        save_atomic(out_path, model.backbone.state_dict())
    return {"steps": step, "seconds": time.perf_counter() - start, "last_loss": loss_value,
            "last_instance_accuracy": acc}
