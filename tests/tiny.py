"""Tiny stand-ins the tests make themselves: a synthetic dataset with a split, and CLIP weights."""
from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def make_tiny_dataset(root: Path, n_train: int, n_val: int) -> Path:
    """``root/synthetic`` (generated, seed 3) and ``root/splits/synthetic.json`` (25%, seed 0)."""
    from pldc_core.data.coco import load_coco
    from pldc_core.data.splits import write_splits
    from pldc_core.data.synthetic import generate_synthetic

    generate_synthetic(root / "synthetic", n_train=n_train, n_val=n_val, seed=3, progress=False)
    index = load_coco(root / "synthetic" / "annotations" / "instances_train.json", root / "synthetic" / "train")
    write_splits(root / "splits" / "synthetic.json", index.image_ids, percents=(25,), seeds=(0,), dataset="synthetic")
    return root


def tiny_clip_weights(folder: Path, name: str) -> Path:
    """Register a tiny open_clip architecture ``name`` and save random weights for it (no real ones here)."""
    import open_clip
    import torch

    cfg_path = folder / f"{name}.json"
    cfg_path.write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    weights = folder / f"{name}.pt"
    torch.save(open_clip.create_model(name, pretrained=None).state_dict(), weights)
    return weights
