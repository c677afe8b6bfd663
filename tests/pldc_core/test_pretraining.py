"""Upstream pretraining: backbone and small CLIP on a tiny corpus, their files, and loading them back."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from pldc_core.config import ModelConfig
from pldc_core.data.coco import load_coco
from pldc_core.data.upstream import generate_upstream
from pldc_core.model.mask2former import build_model, load_backbone_weights, load_model_weights
from pldc_core.pretraining.backbone import (
    IGNORE,
    BackbonePretrainConfig,
    mask_pooled,
    pretrain_backbone,
    semantic_targets,
)
from pldc_core.pretraining.clip import ClipPretrainConfig, pretrain_clip, random_caption


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("up") / "upstream"
    generate_upstream(out, n_train=10, n_val=1, seed=1, workers=1, progress=False)
    return load_coco(out / "annotations" / "instances_train.json", out / "train")


def test_semantic_targets_and_mask_pooling_by_hand():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 2:, 2:] = True
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, :, 3] = False
    target = semantic_targets([masks], [torch.tensor([4, 0])], valid)
    assert target[0, 0, 0] == 5 and target[0, 2, 2] == 1 and target[0, 0, 3] == 0 + IGNORE and target[0, 1, 2] == 0
    features = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    pooled = mask_pooled(features, [masks])
    # the mean of channel 0 over rows 0-1, cols 0-1 is (0 + 1 + 4 + 5) / 4; on a 2x2 grid the
    # masks' area weights pick exactly one cell each
    assert torch.allclose(pooled[0], torch.tensor([2.5, 18.5]))
    assert torch.allclose(mask_pooled(torch.nn.functional.avg_pool2d(features, 2), [masks]),
                          torch.tensor([[2.5, 18.5], [12.5, 28.5]]))


def test_backbone_pretraining_writes_loadable_weights(corpus, tmp_path):
    out = tmp_path / "bb.pt"
    result = pretrain_backbone(corpus, out, BackbonePretrainConfig(steps=3, batch_size=2, warmup=1), progress=False)
    assert result["steps"] == 3 and np.isfinite(result["last_loss"])
    # a detector's backbone loads the file (the format model.backbone_weights reads)
    model = build_model(ModelConfig(backbone="tiny", num_queries=4, hidden_dim=32, encoder_layers=1,
                                    decoder_layers=2, num_heads=2, dim_feedforward=32), num_classes=3)
    load_backbone_weights(model.backbone, str(out))
    saved = torch.load(out, weights_only=True)
    assert set(saved) == set(model.backbone.state_dict())
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in saved.items())


def test_a_paused_backbone_run_resumes_exactly(corpus, tmp_path):
    cfg = BackbonePretrainConfig(steps=4, batch_size=2, warmup=1, checkpoint_every=100)
    pretrain_backbone(corpus, tmp_path / "straight.pt", cfg, progress=False)
    paused = tmp_path / "paused.pt"
    assert pretrain_backbone(corpus, paused, cfg, progress=False, stop_at=2)["steps"] == 2
    assert not paused.exists() and torch.load(tmp_path / "paused.pt.resume.pt", weights_only=False)["step"] == 2
    # a killed run may have logged steps after its checkpoint, the last cut short; they are dropped on resume
    log = tmp_path / "paused.pt.log.jsonl"
    log.write_text('{"step": 2, "loss": 1.0}\n{"step": 3, "loss": 9.0}\n{"step": 4, "lo')
    assert pretrain_backbone(corpus, paused, cfg, progress=False)["steps"] == 4
    assert log.read_text() == '{"step": 2, "loss": 1.0}\n'
    (tmp_path / "broken.pt.resume.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt.resume.pt: unreadable checkpoint"):
        pretrain_backbone(corpus, tmp_path / "broken.pt", cfg, progress=False)
    a, b = torch.load(tmp_path / "straight.pt", weights_only=True), torch.load(paused, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="another configuration"):
        pretrain_backbone(corpus, paused, BackbonePretrainConfig(steps=6, batch_size=2, warmup=1), progress=False)


def test_small_clip_pretraining_and_dicc_loading(corpus, tmp_path, caplog):
    from pldc_core.method.dicc import ClipClassifier

    weights, config = tmp_path / "clip.pt", tmp_path / "tinyclip.json"
    result = pretrain_clip(corpus, weights, config, ClipPretrainConfig(epochs=1, batch_size=8, warmup=1),
                           progress=False)
    assert result["steps"] >= 1 and result["crops"] > 8
    state = torch.load(weights, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    clip = ClipClassifier.load(str(config), pretrained=str(weights))
    clip.set_categories(["disk", "square", "hexagon"])
    image = torch.rand(3, 128, 128)
    masks = torch.zeros(2, 128, 128, dtype=torch.bool)
    masks[0, 10:40, 10:40] = True
    masks[1, 60:90, 50:100] = True
    probs = clip.probs(image, masks)
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)
    # the loaded model holds the trained weights (in float32)
    loaded = clip.model.state_dict()
    assert all(torch.equal(loaded[k].half(), v) for k, v in state.items() if v.is_floating_point())
    # the words its captions held are listed beside the config, and DICC warns about the others
    from types import SimpleNamespace

    from pldc_core.method.dicc import load_run_clip, unseen_category_words

    shapes = corpus.categories.names
    assert unseen_category_words(str(config), sorted(shapes)) == []
    assert unseen_category_words(str(config), ["Disk", "traffic light"]) == [("traffic", "traffic light"),
                                                                              ("light", "traffic light")]
    cfg = SimpleNamespace(clip_model=str(config), clip_weights=str(weights), clip_template="a photo of a {}.")
    with caplog.at_level(logging.WARNING, logger="pldc_core.method.dicc"):
        load_run_clip(cfg, ["disk", "bus"])
    assert "'bus' (bus)" in caplog.text and "pldc.dicc=false" in caplog.text
    # training turns DICC off for such classes (the default) or keeps it with a warning
    from pldc_core.method.dicc import training_clip

    caplog.clear()
    cfg.dicc, cfg.dicc_unseen_words, cfg.dicc_crop = True, "disable", "box"
    with caplog.at_level(logging.WARNING, logger="pldc_core.method.dicc"):
        assert training_clip(cfg, ["disk", "bus"]) is None
    assert "DICC is off for this run" in caplog.text and "'bus' (bus)" in caplog.text
    assert isinstance(training_clip(cfg, ["disk", "square"]), ClipClassifier)
    cfg.dicc_unseen_words = "warn"
    assert isinstance(training_clip(cfg, ["disk", "bus"]), ClipClassifier)
    cfg.dicc = False
    assert training_clip(cfg, ["disk", "square"]) is None


def test_captions_vary_their_wording_but_always_name_the_shape():
    rng = np.random.default_rng(0)
    captions = {random_caption("hexagon", {"colour": [0.9, 0.1, 0.1], "texture": "striped"}, rng) for _ in range(60)}
    assert len(captions) > 5 and all("hexagon" in c for c in captions)
    assert any("red" in c for c in captions) and any("red" not in c for c in captions)


def test_init_weights_load_everything_but_a_head_of_other_classes(tmp_path):
    cfg = ModelConfig(backbone="tiny", num_queries=4, hidden_dim=32, encoder_layers=1, decoder_layers=2,
                      num_heads=2, dim_feedforward=32)
    torch.manual_seed(0)
    upstream = build_model(cfg, num_classes=30)
    torch.save({"student": upstream.state_dict(), "teacher": None}, tmp_path / "run.pt")
    torch.manual_seed(1)
    fine = build_model(cfg, num_classes=10)
    source = upstream.state_dict()
    # what depends on the number of classes: the class head (and transformers' loss weights)
    per_class = {k for k, v in fine.state_dict().items() if v.shape != source[k].shape}
    assert {k for k in per_class if "class_predictor" in k} == {"net.class_predictor.weight", "net.class_predictor.bias"}
    fresh = {k: v.clone() for k, v in fine.state_dict().items() if k in per_class}
    load_model_weights(fine, str(tmp_path / "run.pt"))
    for k, v in fine.state_dict().items():
        assert torch.equal(v, fresh[k] if k in per_class else source[k]), k
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model_weights(fine, str(tmp_path / "missing.pt"))
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no tensor matches"):
        load_model_weights(fine, str(tmp_path / "other.pt"))


def test_export_writes_a_checkpoints_model_for_init_weights(tmp_path, capsys):
    from pldc_core.cli import main

    cfg = ModelConfig(backbone="tiny", num_queries=4, hidden_dim=32, encoder_layers=1, decoder_layers=2,
                      num_heads=2, dim_feedforward=32)
    torch.manual_seed(0)
    student, teacher = build_model(cfg, num_classes=5), build_model(cfg, num_classes=5)
    torch.save({"student": student.state_dict(), "teacher": teacher.state_dict(), "iteration": 7},
               tmp_path / "ckpt.pt")
    assert main(["pretrain", "export", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "w.pt")]) == 0
    assert "of iteration 7 (teacher)" in capsys.readouterr().out
    exported = torch.load(tmp_path / "w.pt", weights_only=True)
    assert all(torch.equal(v, teacher.state_dict()[k].half()) for k, v in exported.items() if v.is_floating_point())
    fine = build_model(cfg, num_classes=5)
    load_model_weights(fine, str(tmp_path / "w.pt"))
    assert torch.equal(fine.state_dict()["net.class_predictor.weight"],
                       teacher.state_dict()["net.class_predictor.weight"].half().float())
    torch.save({"model": {}}, tmp_path / "other.pt")
    assert main(["pretrain", "export", str(tmp_path / "other.pt"), "--out", str(tmp_path / "x.pt")]) == 1
    assert "no student model" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_pretrain_bad_numbers_are_refused_and_leave_nothing(corpus, tmp_path, capsys):
    from apps.cli import main
    from tests.cli_checks import assert_one_error_line

    with pytest.raises(SystemExit) as exited:  # argparse's usage error, before any work
        main(["pretrain", "clip", "--batch-size", "0", "--out", str(tmp_path / "w" / "c.pt")])
    assert exited.value.code == 2 and "argument --batch-size: must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["pretrain", "clip", "--noisy-copies", "-1", "--out", str(tmp_path / "w" / "c.pt")])
    assert exited.value.code == 2 and "argument --noisy-copies: must be >= 0, got -1" in capsys.readouterr().err
    out = tmp_path / "w"
    assert main(["pretrain", "clip", "--data-root", str(corpus.json_path.parents[2]), "--epochs", "1", "--batch-size", "100000",
                 "--out", str(out / "c.pt"), "--config-out", str(out / "c.json")]) == 1
    assert_one_error_line(capsys.readouterr().err, "pretrain clip", "crops are fewer than one batch of 100000")
    assert not out.exists()  # neither the config written for open_clip nor the folder made for it


def test_coarse_masks_look_like_a_detectors_masks_and_are_seeded():
    from pldc_core.pretraining.clip import coarse_masks

    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[0, 10:40, 10:40] = True                    # a large square
    masks[1, 50:56, 50:58] = True                    # a small bar
    masks[2, 20, 50] = True                          # one pixel: may vanish, is then kept as it was
    a = coarse_masks(masks, torch.Generator().manual_seed(3))
    b = coarse_masks(masks, torch.Generator().manual_seed(3))
    assert a.dtype == torch.bool and a.shape == masks.shape and torch.equal(a, b)
    assert all(m.any() for m in a)
    inter = (a & masks).flatten(1).sum(1).float()
    union = (a | masks).flatten(1).sum(1).float()
    iou = inter / union
    # the large mask stays close to its object, yet no longer pixel exact across seeds
    assert iou[0] > 0.75
    others = [coarse_masks(masks, torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(not torch.equal(o[0], masks[0]) for o in others)
    assert not all(torch.equal(o[1], others[0][1]) for o in others)
    assert coarse_masks(masks[:0], torch.Generator()).shape == (0, 64, 64)


def test_clip_pretraining_with_noisy_copies_crops_each_instance_again(corpus):
    from pldc_core.pretraining.clip import instance_crops

    clean, shapes, _ = instance_crops(corpus, 128, 32, progress=False)
    noisy, noisy_shapes, attributes = instance_crops(corpus, 128, 32, progress=False, noisy_copies=2, seed=0)
    assert len(noisy) == 3 * len(clean) == len(noisy_shapes) == len(attributes)
    assert sorted(noisy_shapes) == sorted(shapes * 3)
    # the first copy of every image is the clean crop; the others differ from it somewhere
    assert not torch.equal(noisy, torch.cat([clean] * 3))
    assert torch.equal(instance_crops(corpus, 128, 32, progress=False, noisy_copies=2, seed=0)[0], noisy)
