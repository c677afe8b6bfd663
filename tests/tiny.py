"""Tiny stand-ins the tests make themselves: a synthetic dataset with a split, a trained run, and CLIP weights."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

# Convolutional image towers, for DICC's mask_pool mode: open_clip's ModifiedResNet (as OpenAI's
# RN50 and the embedded CLIP) and a timm ConvNeXt (timm's 0.3 M-parameter test model)
TINY_RESNET_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": TINY_CLIP_CFG["text_cfg"],
}
TINY_CONVNEXT_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"timm_model_name": "test_convnext", "timm_model_pretrained": False, "timm_pool": "",
                   "timm_proj": "linear", "image_size": 64},
    "text_cfg": TINY_CLIP_CFG["text_cfg"],
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


def smoke_config(data_root: Path, *extra: str):
    """configs/smoke.yaml on ``make_tiny_dataset``'s data; thresholds at 0 so that the untrained teacher
    still produces pseudo-labels to learn from."""
    from pldc_core.config import load_config

    return load_config(ROOT / "configs" / "smoke.yaml", [
        f"data.data_root={data_root}", "data.percent=25", "data.eval_images=4", "pldc.c_t=0.0", "pldc.m_t=0.0",
        "records.num_images=4", *extra])


def train_tiny_run(data_root: Path, run_dir: Path, *extra: str) -> Path:
    """A finished smoke run in ``run_dir``: 4 burn-in + 4 PL-DC steps, checkpoints and records at 4 and 8."""
    from pldc_core.training.trainer import Trainer

    trainer = Trainer(smoke_config(data_root, *extra), run_dir)
    trainer.train()
    trainer.close()
    return run_dir


def tiny_clip_weights(folder: Path, name: str, config: dict = TINY_CLIP_CFG) -> Path:
    """Register a tiny open_clip architecture ``name`` (``config``: a ViT by default) and save random
    weights for it (no real ones here)."""
    import open_clip
    import torch

    cfg_path = folder / f"{name}.json"
    cfg_path.write_text(json.dumps(config))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    weights = folder / f"{name}.pt"
    torch.save(open_clip.create_model(name, pretrained=None).state_dict(), weights)
    return weights
