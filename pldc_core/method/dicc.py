"""DICC's CLIP side (docs/METHOD.md, Eq. 6-7): mask crops and zero-shot class probabilities.

``load_run_clip`` builds a run's classifier for its DICC mode: a ``ClipClassifier`` on box or
component crops, or a ``mask_pool.MaskPoolClassifier`` on pooled dense features.

The fusion with the teacher (Eq. 8-9) is ``pseudo_labels.dicc_weight`` / ``dicc_fuse``.
"""
from __future__ import annotations

import copy
import logging
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from pldc_core.messages import first_sentence
from pldc_core.method.class_texts import class_prompts, read_class_descriptions
from pldc_core.method.mask_pool import MaskPoolClassifier

log = logging.getLogger(__name__)

HOW_TO_SUPPLY = (
    "Supply CLIP weights in one of these ways:\n"
    "  - a local checkpoint file (open_clip or OpenAI format): set the config key "
    "pldc.clip_weights=/path/to/checkpoint.pt (e.g. OpenAI's RN50.pt for pldc.clip_model=RN50);\n"
    "  - pldc.clip_weights=openai on a machine that is online, or whose Hugging Face hub cache "
    "already holds the weights (e.g. timm/resnet50_clip.openai for RN50);\n"
    "or turn DICC off with pldc.dicc=false."
)


def _is_torchscript_archive(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


class DiccWeightsMissing(RuntimeError):
    """DICC was asked for but no usable CLIP weights are available; the message says what to do."""

    @property
    def problem(self) -> str:
        """The first line of the message: what is wrong, without the config-key remedies."""
        return str(self).splitlines()[0]


CLI_HOW_TO_SUPPLY = ("pass --clip-weights FILE (an open_clip or OpenAI checkpoint, e.g. OpenAI's RN50.pt), "
                     "or --clip-weights openai on a machine that is online")


@torch.no_grad()
def largest_component(masks: torch.Tensor, max_iters: int | None = None) -> torch.Tensor:
    """Each bool mask ``[K, H, W]`` reduced to its largest 8-connected component.

    Teacher masks often carry a few stray pixels far from the object; the bounding box of the
    whole mask then frames mostly background and the object shrinks to a speck in CLIP's crop
    (docs/METHOD.md, "DICC crops"). Labels spread by 3x3 max-pooling until stable (at most
    ``H + W`` rounds by default), so it runs on any device without leaving it.
    """
    if masks.dim() != 3 or masks.dtype != torch.bool:
        raise ValueError(f"largest_component: masks must be bool [K, H, W], got {masks.dtype} {tuple(masks.shape)}")
    k, h, w = masks.shape
    if k == 0 or not masks.any():
        return masks.clone()
    if masks.device.type == "cpu" and max_iters is None:
        return _largest_component_scipy(masks)
    fmask = masks[:, None].float()
    # distinct positive labels per pixel (1..H*W), 0 outside the mask
    ids = torch.arange(1, h * w + 1, device=masks.device, dtype=torch.float32).view(1, 1, h, w) * fmask
    for i in range(max_iters or h + w):
        grown = F.max_pool2d(ids, 3, stride=1, padding=1) * fmask
        if i % 8 == 7 and torch.equal(grown, ids):
            break
        ids = grown
    labels = ids[:, 0].long().view(k, -1)  # [K, H*W], each component holds its largest pixel id
    sizes = torch.zeros(k, h * w + 1, device=masks.device, dtype=torch.long)
    sizes.scatter_add_(1, labels, torch.ones_like(labels))
    sizes[:, 0] = 0
    best = sizes.argmax(dim=1, keepdim=True)  # ties: the first id, i.e. the component whose last pixel comes first
    return ((labels == best) & masks.reshape(k, -1)).view(k, h, w)


def _largest_component_scipy(masks: torch.Tensor) -> torch.Tensor:
    """``largest_component`` on the CPU with scipy's labelling, the same masks in a fraction of the
    time (``benchmarks/bench_largest_component.py``); ties go to the same component."""
    import numpy as np
    from scipy import ndimage

    arr = masks.numpy()
    out = np.zeros_like(arr)
    for i, mask in enumerate(arr):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        tied = np.flatnonzero(sizes == sizes.max())
        if len(tied) > 1:  # the pooling version keeps the one whose last pixel in raster order comes first
            last = ndimage.maximum(np.arange(labels.size).reshape(labels.shape), labels, index=tied + 1)
            tied = tied[[int(np.argmin(last))]]
        out[i] = labels == tied[0] + 1
    return torch.from_numpy(out)


@torch.no_grad()
def mask_crops(image: torch.Tensor, masks: torch.Tensor, size: int, mean: torch.Tensor,
               std: torch.Tensor) -> torch.Tensor:
    """CLIP inputs for each mask: ``image [3, H, W]`` in [0, 1], ``masks [K, h, w]`` bool,
    ``mean``/``std`` ``[3, 1, 1]`` on the device the crops are made on.

    Each crop is the mask's bounding box widened to a square about its centre (so the object
    is not distorted), resized to ``size`` x ``size`` and normalised. Outside the mask the crop
    is blank: the mean colour, i.e. 0 after normalisation (at the mask's edge, partly covered
    pixels are blended). ``masks`` may be at a lower resolution than the image if both cover the
    same canvas (e.g. pseudo-masks at mask-logit resolution). An empty mask gives a blank crop.
    Returns ``[K, 3, size, size]`` float32 on ``mean``'s device.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"crops: image must be [3, H, W], got {tuple(image.shape)}")
    if masks.dim() != 3 or masks.dtype != torch.bool:
        raise ValueError(f"crops: masks must be bool [K, H, W], got {masks.dtype} {tuple(masks.shape)}")
    device = mean.device
    if masks.shape[0] == 0:
        return torch.zeros(0, 3, size, size, device=device)
    image = image.to(device, torch.float32)
    masks = masks.to(device)
    (height, width), (mh, mw) = image.shape[-2:], masks.shape[-2:]
    scale = torch.tensor([width / mw, height / mh] * 2, device=device)

    rows, cols = masks.any(dim=2), masks.any(dim=1)  # [K, mh], [K, mw]
    empty = ~rows.any(dim=1)
    y0 = rows.float().argmax(dim=1)
    y1 = mh - rows.flip(1).float().argmax(dim=1)
    x0 = cols.float().argmax(dim=1)
    x1 = mw - cols.flip(1).float().argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float() * scale  # pixel edges, image coordinates
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    boxes[empty] = torch.tensor([0.0, 0.0, width, height], device=device)
    index = torch.arange(len(boxes), device=device, dtype=torch.float32)[:, None]

    pixels = roi_align(image[None], torch.cat([torch.zeros_like(index), boxes], dim=1), size,
                       aligned=True)  # [K, 3, S, S]
    # The mask's coverage of each crop pixel, [K, 1, S, S]. One pixel of zero padding: roi_align
    # clamps samples up to a pixel outside its input to the edge, which would smear the image's
    # edge pixels into a box that reaches past the image.
    alpha = roi_align(F.pad(masks[:, None].float(), (1, 1, 1, 1)), torch.cat([index, boxes / scale + 1], dim=1),
                      size, aligned=True)
    # (alpha * pixel + (1 - alpha) * mean - mean) / std: the blank background normalises to 0
    return alpha * (pixels - mean) / std


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class ClipClassifier:
    """Zero-shot classification of mask crops with an open_clip model (weights frozen, eval mode).

    ``model``: an open_clip model (``encode_image``, ``encode_text``, ``logit_scale``);
    ``mean``/``std``: its input normalisation; ``tokenizer``: names -> token ids;
    ``image_size``: the square input side S.
    """

    def __init__(self, model: torch.nn.Module, mean: Sequence[float], std: Sequence[float],
                 tokenizer: Callable[[list[str]], torch.Tensor], image_size: int, batch_size: int = 64):
        self.model = model.eval().requires_grad_(False)
        self.device = next(model.parameters()).device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.batch_size = batch_size
        self.categories: list[str] | None = None
        self.text_embeddings: torch.Tensor | None = None  # [N, D], unit norm
        self.crop_mode = "box"  # pldc.dicc_crop: box (the whole mask's box, the paper) | component

    @classmethod
    def load(cls, model_name: str = "RN50", pretrained: str | None = None, device: str | torch.device = "cpu",
             image_size: int | None = None, *, allow_random: bool = False) -> "ClipClassifier":
        """Build an open_clip model with weights from a local file or a pretrained tag.

        ``model_name``: one of open_clip's models, or the path of a model config JSON file
        (registered with open_clip under the file's stem).

        ``pretrained``: a file path, or one of open_clip's tags for ``model_name`` (``"openai"``:
        the hub, or its cache when offline). ``None`` raises :class:`DiccWeightsMissing` unless
        ``allow_random`` (tests only: random weights make DICC meaningless). ``image_size``
        overrides the model's input size (it must agree with the checkpoint).
        """
        import open_clip  # imported here: it is slow to import and only DICC needs it

        if model_name.endswith(".json"):
            # a model config of the user's (e.g. the embedded small CLIP, weights/upstream-clip.json)
            config = Path(model_name).expanduser()
            if not config.is_file():
                raise DiccWeightsMissing(f"CLIP model config {model_name!r}: no such file (pldc.clip_model)")
            open_clip.add_model_config(config)
            model_name = config.stem
        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown CLIP model {model_name!r} (pldc.clip_model); open_clip knows "
                             f"{', '.join(open_clip.list_models())}")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        kwargs: dict = {"device": device}
        if image_size is not None:
            kwargs["force_image_size"] = image_size
        if pretrained is None:
            if not allow_random:
                raise DiccWeightsMissing(f"no CLIP weights were given for {model_name} (DICC needs them).\n"
                                         + HOW_TO_SUPPLY)
        elif pretrained in tags:
            # e.g. OpenAI's weights were trained with QuickGELU; build the model to match them.
            kwargs["force_quick_gelu"] = open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False)
        elif not Path(pretrained).expanduser().is_file():
            raise DiccWeightsMissing(f"CLIP weights {pretrained!r} for {model_name}: no such file, and not one of "
                                     f"open_clip's tags for this model ({', '.join(tags) or 'none'}).\n"
                                     + HOW_TO_SUPPLY)
        else:
            pretrained = str(Path(pretrained).expanduser())
            if _is_torchscript_archive(pretrained):
                # OpenAI's own files (e.g. RN50.pt) are TorchScript archives of QuickGELU models;
                # torch.jit.load reads them (weights_only applies to pickles, which they are not).
                kwargs.update(weights_only=False, force_quick_gelu=True)
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, **kwargs)
        except Exception as err:  # any failure to read the weights gets the same remedy; cause chained
            where = ("could not be fetched from the hub or found in its cache" if pretrained in tags
                     else "could not be loaded from that file")
            reason = first_sentence(str(err)) or type(err).__name__
            raise DiccWeightsMissing(f"CLIP weights {pretrained!r} for {model_name} {where}: {reason}\n"
                                     + HOW_TO_SUPPLY) from err
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = model.visual.image_size
        size = size if isinstance(size, int) else size[0]
        return cls(model, cfg["mean"], cfg["std"], open_clip.get_tokenizer(model_name), size)

    @torch.no_grad()
    def set_categories(self, names: Sequence[str], template: str = "a photo of a {}.",
                       descriptions: Mapping[str, Sequence[str]] | None = None,
                       source: str = "class descriptions") -> None:
        """Encode the texts of each category and cache the unit-norm text embeddings ``[N, D]``.

        A category's texts are ``descriptions[name]`` or, when it has none, ``template`` with its
        name (``class_texts.class_prompts``; ``source`` names the descriptions in errors). Each
        text's embedding is normalised, a category's are averaged and the mean normalised again.
        """
        if not names:
            raise ValueError("set_categories: no category names given")
        prompts = class_prompts(names, template, descriptions, source)
        texts = [text for group in prompts for text in group]
        encoded = [F.normalize(self.model.encode_text(self.tokenizer(chunk).to(self.device)).float(), dim=-1)
                   for chunk in _chunks(texts, self.batch_size)]
        owner = torch.repeat_interleave(torch.arange(len(prompts), device=self.device),
                                        torch.tensor([len(g) for g in prompts], device=self.device))
        sums = torch.zeros(len(prompts), encoded[0].shape[1], device=self.device)
        self.text_embeddings = F.normalize(sums.index_add_(0, owner, torch.cat(encoded)), dim=-1)
        self.categories = list(names)

    def crops(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """CLIP inputs for each mask (``mask_crops`` at this model's size and normalisation); with
        ``crop_mode == "component"`` each mask is first reduced to its largest connected part."""
        if self.crop_mode == "component":
            masks = largest_component(masks)
        return mask_crops(image, masks, self.image_size, self.mean, self.std)

    @torch.no_grad()
    def probs(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Eq. 7: ``softmax(logit_scale * img_emb . text_emb)`` per mask -> ``[K, N]`` (image's device)."""
        if self.text_embeddings is None:
            raise RuntimeError("ClipClassifier.probs: call set_categories(names) first")
        if masks.shape[0] == 0:
            return torch.zeros(0, len(self.text_embeddings), device=image.device)
        crops = self.crops(image, masks)
        embeddings = [F.normalize(self.model.encode_image(chunk).float(), dim=-1)
                      for chunk in crops.split(self.batch_size)]
        logits = self.model.logit_scale.exp().float() * torch.cat(embeddings) @ self.text_embeddings.T
        return logits.softmax(dim=-1).to(image.device)


def load_run_clip(pldc_cfg, category_names: Sequence[str], device: str | torch.device = "cpu",
                  weights: str | None = None, mode: str | None = None):
    """The CLIP classifier a run's DICC uses: ``pldc.clip_model`` with ``weights`` (default
    ``pldc.clip_weights``), texts from ``pldc.class_descriptions`` or ``pldc.clip_template``.

    ``mode`` (default: the run's) is ``box`` or ``component`` (a ``ClipClassifier`` cropping
    that way) or ``mask_pool`` (a ``mask_pool.MaskPoolClassifier``); each has
    ``probs(image, masks) -> [K, N]``.
    """
    mode = mode or run_dicc_mode(pldc_cfg)
    if mode not in DICC_MODES:
        raise ValueError(f"unknown DICC mode {mode!r}; known: {', '.join(DICC_MODES)}")
    clip = ClipClassifier.load(pldc_cfg.clip_model, pretrained=weights or pldc_cfg.clip_weights, device=device)
    descriptions_file = getattr(pldc_cfg, "class_descriptions", None)
    descriptions = read_class_descriptions(descriptions_file) if descriptions_file else None
    clip.set_categories(list(category_names), template=pldc_cfg.clip_template, descriptions=descriptions,
                        source=str(descriptions_file))
    unseen = unseen_category_words(pldc_cfg.clip_model, category_names)
    if unseen:
        log.warning("DICC: %s. Measure it with `pldc clip-crops`, give a CLIP that knows these words, or set "
                    "pldc.dicc=false.", unseen_words_problem(pldc_cfg.clip_model, unseen))
    return classifier_for_mode(clip, mode, pldc_cfg.clip_model)


# What DICC can classify a mask from: its box crop, its largest part's crop, or pooled dense features
DICC_MODES = ("box", "component", "mask_pool")


def classifier_for_mode(clip: ClipClassifier, mode: str, name: str = "this CLIP"):
    """``clip`` (categories set) as DICC's classifier in ``mode``; shares its model and text embeddings."""
    if mode == "mask_pool":
        return MaskPoolClassifier(clip, name=name)
    if mode not in ("box", "component"):
        raise ValueError(f"unknown DICC mode {mode!r}; known: {', '.join(DICC_MODES)}")
    view = copy.copy(clip)
    view.crop_mode = mode
    return view


def run_dicc_mode(pldc_cfg) -> str:
    """The mode a run's DICC uses: ``mask_pool``, or the crop ``pldc.dicc_crop`` names."""
    if getattr(pldc_cfg, "dicc_mode", "crop") == "mask_pool":
        return "mask_pool"
    return getattr(pldc_cfg, "dicc_crop", "box")


def unseen_words_problem(clip_model: str, unseen: list[tuple[str, str]]) -> str:
    """One sentence naming the category words a CLIP's training captions never held."""
    words = ", ".join(f"'{w}' ({c})" for w, c in unseen[:8]) + (f" and {len(unseen) - 8} more" if len(unseen) > 8 else "")
    return (f"the CLIP {clip_model} was trained on captions that never contain {words}, so its probabilities "
            "for those categories are guesses and DICC may turn right pseudo-labels wrong")


def training_clip(pldc_cfg, category_names: Sequence[str], device: str | torch.device = "cpu"
                  ) -> ClipClassifier | MaskPoolClassifier | None:
    """The CLIP classifier that training's DICC uses (``load_run_clip``), or None where DICC is off.

    DICC is off when ``pldc.dicc`` is, and, with ``pldc.dicc_unseen_words: disable`` (the default),
    when the CLIP's caption vocabulary (known for the embedded CLIP only) misses a word of a class
    name: a class CLIP cannot name would get guessed corrections (docs/METHOD.md, "DICC and the
    CLIP's vocabulary").
    """
    if not pldc_cfg.dicc:
        return None
    unseen = unseen_category_words(pldc_cfg.clip_model, category_names)
    if unseen and pldc_cfg.dicc_unseen_words == "disable":
        log.warning("DICC is off for this run: %s (pldc.dicc_unseen_words=warn keeps it on).",
                    unseen_words_problem(pldc_cfg.clip_model, unseen))
        return None
    return load_run_clip(pldc_cfg, category_names, device)


def caption_words_path(config_path: str | os.PathLike) -> Path:
    """The file beside a CLIP model config that lists the words of the captions it was trained on."""
    config_path = Path(config_path)
    return config_path.with_name(config_path.stem + ".words.txt")


def unseen_category_words(clip_model: str, category_names: Sequence[str]) -> list[tuple[str, str]]:
    """``(word, category)`` for each word of a category name that the CLIP's training captions lacked.

    Only known for a CLIP config JSON with a ``<stem>.words.txt`` beside it (written by
    ``pldc pretrain clip``); web-trained CLIPs have no such list and give ``[]``.
    """
    if not clip_model.endswith(".json"):
        return []
    words_file = caption_words_path(clip_model)
    if not words_file.is_file():
        return []
    known = set(words_file.read_text().split())
    return [(w, name) for name in category_names for w in name.lower().split() if w not in known]
