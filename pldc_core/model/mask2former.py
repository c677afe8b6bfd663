"""Mask2Former (from ``transformers``) with a ResNet backbone, built from the experiment config."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pldc_core.config import ModelConfig
from pldc_core.messages import first_sentence
from pldc_core.model import deformable_attention

log = logging.getLogger(__name__)

# (embedding size, stage widths, blocks per stage, block type)
BACKBONES = {
    "tiny": (32, [32, 64, 128, 256], [1, 1, 1, 1], "basic"),
    "resnet18": (64, [64, 128, 256, 512], [2, 2, 2, 2], "basic"),
    "resnet34": (64, [64, 128, 256, 512], [3, 4, 6, 3], "basic"),
    "resnet50": (64, [256, 512, 1024, 2048], [3, 4, 6, 3], "bottleneck"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet_config(name: str):
    """transformers' ``ResNetConfig`` of one of BACKBONES, giving all four stages (strides 4-32)."""
    from transformers import ResNetConfig

    emb, widths, depths, block = BACKBONES[name]
    return ResNetConfig(embedding_size=emb, hidden_sizes=widths, depths=depths, layer_type=block,
                        out_features=["stage1", "stage2", "stage3", "stage4"])


@dataclass
class QueryOutputs:
    """Per-query outputs of the last decoder layer, plus the auxiliary layers' for deep supervision."""

    class_logits: torch.Tensor  # [B, Q, N+1], last = no object
    mask_logits: torch.Tensor  # [B, Q, S/s, S/s], s = model.mask_stride (the auxiliary layers': S/4)
    aux: list[tuple[torch.Tensor, torch.Tensor]]

    def split(self, n: int) -> tuple["QueryOutputs", "QueryOutputs"]:
        """Split along the batch: the first ``n`` images and the rest."""
        head = QueryOutputs(self.class_logits[:n], self.mask_logits[:n], [(c[:n], m[:n]) for c, m in self.aux])
        tail = QueryOutputs(self.class_logits[n:], self.mask_logits[n:], [(c[n:], m[n:]) for c, m in self.aux])
        return head, tail


class FineMaskFeatures(nn.Module):
    """Per-pixel embeddings at stride 2 for the final masks (``model.mask_stride: 2``; not in
    Mask2Former, docs/METHOD.md "A finer mask grid"): the pixel decoder's stride-4 embeddings,
    upsampled, plus a correction read from the backbone stem's stride-2 features. The correction's
    last layer starts at zero, so a fresh head draws exactly the upsampled stride-4 masks."""

    def __init__(self, stem_channels: int, dim: int, hidden: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(stem_channels, hidden, 3, padding=1, bias=False),
                                  nn.GroupNorm(8, hidden), nn.ReLU())
        self.out = nn.Conv2d(hidden, dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, coarse: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        """``coarse [B, C, h, w]`` (stride 4), ``stem [B, C_stem, 2h, 2w]`` -> ``[B, C, 2h, 2w]``."""
        up = nn.functional.interpolate(coarse, size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return up + self.out(self.stem(stem))


def _keep_output(module: nn.Module, _args, output) -> None:
    # a plain function of the module alone, so that deep copies (the EMA teacher) hook their own stem
    module.last_output = output


class Mask2FormerSegmenter(nn.Module):
    """Mask2Former taking images in [0, 1]; normalisation happens inside, so callers never repeat it."""

    def __init__(self, cfg: ModelConfig, num_classes: int):
        super().__init__()
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
        from transformers.utils import logging as hf_logging

        backbone = resnet_config(cfg.backbone)
        # transformers warns that only Swin backbones are "supported"; ResNet trains fine (tested here).
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        m2f = Mask2FormerConfig(
            backbone_config=backbone, use_pretrained_backbone=False, num_labels=num_classes,
            num_queries=cfg.num_queries, hidden_dim=cfg.hidden_dim, mask_feature_size=cfg.hidden_dim,
            feature_size=cfg.hidden_dim, encoder_layers=cfg.encoder_layers,
            # transformers builds decoder_layers - 1 layers (its count includes the prediction made
            # from the initial queries, as detectron2's DEC_LAYERS: 10 for Mask2Former's 9 layers)
            decoder_layers=cfg.decoder_layers + 1,
            num_attention_heads=cfg.num_heads, dim_feedforward=cfg.dim_feedforward,
            encoder_feedforward_dim=cfg.pixel_decoder_feedforward, train_num_points=cfg.train_num_points,
            output_auxiliary_logits=True, use_auxiliary_loss=True,
        )
        self.net = Mask2FormerForUniversalSegmentation(m2f)
        hf_logging.set_verbosity(verbosity)
        deformable_attention.install()  # same attention, faster at small token counts
        self.num_classes = num_classes
        self.mask_stride = cfg.mask_stride  # input pixels per cell of the final masks
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.fine_masks = None
        if cfg.mask_stride == 2:  # before any weights are loaded, so that init_weights can fill it too
            self.fine_masks = FineMaskFeatures(backbone.embedding_size, cfg.hidden_dim)
            self._stem.register_forward_hook(_keep_output)
        if cfg.backbone_weights:
            load_backbone_weights(self.backbone, cfg.backbone_weights)
        if cfg.init_weights:
            load_model_weights(self, cfg.init_weights)
        self.frozen_backbone = cfg.freeze_backbone
        if cfg.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    @property
    def backbone(self) -> nn.Module:
        return self.net.model.pixel_level_module.encoder

    @property
    def _stem(self) -> nn.Module:
        """The backbone's first convolution (stride 2, before the max-pool)."""
        return self.backbone.embedder.embedder

    def train(self, mode: bool = True) -> "Mask2FormerSegmenter":
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()  # a frozen backbone keeps its BatchNorm statistics
        return self

    def forward(self, images: torch.Tensor) -> QueryOutputs:
        out = self.net(pixel_values=(images - self.mean) / self.std)
        aux = [(a["class_queries_logits"], a["masks_queries_logits"]) for a in (out.auxiliary_logits or [])]
        # transformers lists every decoder layer; the last equals the final output.
        if aux and aux[-1][0] is out.class_queries_logits:
            aux = aux[:-1]
        masks = out.masks_queries_logits
        if self.fine_masks is not None:
            masks = self._fine_mask_logits(out)
        return QueryOutputs(out.class_queries_logits, masks, aux)

    def _fine_mask_logits(self, out) -> torch.Tensor:
        """The last decoder layer's masks drawn on the stride-2 embeddings: the same mask embeddings
        transformers' mask predictor makes of that layer's (layer-normed) query states."""
        stem, self._stem.last_output = self._stem.last_output, None
        decoder = self.net.model.transformer_module.decoder
        embeddings = decoder.mask_predictor.mask_embedder(decoder.layernorm(out.transformer_decoder_last_hidden_state))
        pixels = self.fine_masks(out.pixel_decoder_last_hidden_state, stem)
        return torch.einsum("bqc,bchw->bqhw", embeddings, pixels)


def _load_weights_file(path: Path, key: str, *, weights_only: bool):
    """``torch.load`` of a weights file; ValueError naming the file and the config key if it is damaged."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # a truncated zip, a bad pickle, a file of another kind: several types
        raise ValueError(f"{path}: not a readable weights file ({key}): "
                         f"{first_sentence(str(exc)) or type(exc).__name__}") from None


def load_backbone_weights(backbone: nn.Module, source: str) -> None:
    """Load ResNet weights from a local file/folder or, when online, a transformers hub name.

    A local ``.pt``/``.pth``/``.safetensors`` file holds a state dict of transformers' ResNet
    backbone (keys as in ``ResNetBackbone``); a local folder or a hub name is read with
    ``ResNetBackbone.from_pretrained``.
    """
    path = Path(source).expanduser()
    if not path.exists() and (path.is_absolute() or source.startswith((".", "~"))
                              or path.suffix in (".pt", ".pth", ".bin", ".safetensors")):
        raise FileNotFoundError(f"{source}: no such weights file (model.backbone_weights); give an existing "
                                "file, or set model.backbone_weights=null to train from scratch")
    if path.is_file():
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                state = load_file(str(path))
            except Exception as exc:  # safetensors raises its own error types for a damaged header
                raise ValueError(f"{path}: not a readable safetensors file (model.backbone_weights): "
                                 f"{first_sentence(str(exc)) or type(exc).__name__}") from None
        else:
            state = _load_weights_file(path, "model.backbone_weights", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
    else:
        from transformers import ResNetBackbone

        try:
            state = ResNetBackbone.from_pretrained(source).state_dict()
        except OSError as exc:
            raise FileNotFoundError(
                f"model.backbone_weights={source!r}: not a local file and could not be loaded from the hub "
                f"({exc}). Pass a local .pt/.safetensors file, a saved folder, or set model.backbone_weights=null "
                "to train from scratch.") from None
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if len(missing) == len(backbone.state_dict()):
        raise ValueError(f"model.backbone_weights={source!r}: no key matches the {type(backbone).__name__} "
                         f"(first keys: {list(state)[:3]})")
    if missing or unexpected:
        log.warning("backbone weights %s: %d missing, %d unexpected keys", source, len(missing), len(unexpected))


def load_model_weights(model: nn.Module, source: str) -> None:
    """Initialise ``model`` from a whole-model state dict or a run checkpoint (its teacher, else
    its student): every tensor whose name and shape match is loaded. The class head of a model
    pretrained on other classes does not match and keeps its fresh initialisation, as when a
    detector pretrained on a large dataset is fine-tuned on a new one."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.init_weights={source!r}: no such file")
    state = _load_weights_file(path, "model.init_weights", weights_only=False)
    if isinstance(state, dict) and ("student" in state or "teacher" in state):
        state = state.get("teacher") or state["student"]
    if not isinstance(state, dict):
        raise ValueError(f"model.init_weights={source!r}: not a state dict or a pldc checkpoint")
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"model.init_weights={source!r}: no tensor matches this model "
                         f"(first keys: {list(state)[:3]}); is it another architecture?")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in matched.items()}, strict=False)
    skipped = sorted(set(own) - set(matched))
    log.info("init weights %s: %d tensors loaded, %d kept fresh (%s)", source, len(matched), len(skipped),
             ", ".join(skipped[:4]) + (" ..." if len(skipped) > 4 else ""))


def build_model(cfg: ModelConfig, num_classes: int) -> Mask2FormerSegmenter:
    return Mask2FormerSegmenter(cfg, num_classes)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """theta_t <- alpha * theta_t + (1 - alpha) * theta_s; buffers (BN statistics) are copied."""
    s_params = dict(unwrap(student).named_parameters())
    for name, t_param in teacher.named_parameters():
        t_param.mul_(alpha).add_(s_params[name].detach(), alpha=1.0 - alpha)
    s_buffers = dict(unwrap(student).named_buffers())
    for name, t_buf in teacher.named_buffers():
        t_buf.copy_(s_buffers[name])
