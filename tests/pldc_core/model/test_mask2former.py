import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from pldc_core.config import load_config
from pldc_core.model.mask2former import build_model

ROOT = Path(__file__).resolve().parents[3]


def _shape(model):
    """What the built modules hold, counted from the modules themselves."""
    net = model.net.model
    decoder = net.transformer_module.decoder
    pixel = net.pixel_level_module.decoder.encoder
    return {
        "decoder_layers": len(decoder.layers),
        "decoder_ffn": {layer.fc1.out_features for layer in decoder.layers},
        "pixel_decoder_layers": len(pixel.layers),
        "pixel_decoder_ffn": {layer.fc1.out_features for layer in pixel.layers},
        "queries": net.transformer_module.queries_embedder.num_embeddings,
        "hidden": net.transformer_module.queries_embedder.embedding_dim,
    }


def test_paper_config_builds_the_published_mask2former_r50():
    cfg = load_config(ROOT / "configs" / "paper.yaml", ["model.backbone_weights=null"])
    assert _shape(build_model(cfg.model, 80)) == {
        "decoder_layers": 9, "decoder_ffn": {2048}, "pixel_decoder_layers": 6, "pixel_decoder_ffn": {1024},
        "queries": 100, "hidden": 256}


def test_repository_configs_build_the_same_models_as_before_the_key_fix():
    # before config_version 2, cpu-quick's "decoder_layers: 4" built 3 layers, smoke's "2" built 1,
    # and the pixel decoder's FFN had dim_feedforward's width
    quick = _shape(build_model(load_config(ROOT / "configs" / "cpu-quick.yaml", ["model.backbone_weights=null"]).model, 10))
    smoke = _shape(build_model(load_config(ROOT / "configs" / "smoke.yaml").model, 10))
    assert (quick["decoder_layers"], quick["decoder_ffn"], quick["pixel_decoder_ffn"]) == (3, {512}, {512})
    assert (smoke["decoder_layers"], smoke["decoder_ffn"], smoke["pixel_decoder_ffn"]) == (1, {128}, {128})


def _tiny(mask_stride: int):
    return build_model(load_config(ROOT / "configs" / "smoke.yaml", [f"model.mask_stride={mask_stride}"]).model, 10)


def test_a_fresh_stride_2_head_draws_the_upsampled_stride_4_masks():
    torch.manual_seed(0)
    coarse, fine = _tiny(4).eval(), _tiny(2).eval()
    missing, unexpected = fine.load_state_dict(coarse.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("fine_masks.") for k in missing)
    images = torch.rand(2, 3, 64, 64)
    a, b = coarse(images), fine(images)
    assert a.mask_logits.shape[-2:] == (16, 16) and b.mask_logits.shape[-2:] == (32, 32)
    assert torch.equal(a.class_logits, b.class_logits)
    assert [m.shape for _, m in b.aux] == [m.shape for _, m in a.aux]  # auxiliary layers stay at stride 4
    up = F.interpolate(a.mask_logits, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(b.mask_logits, up, atol=1e-5)


def test_the_stride_2_head_learns_and_an_ema_copy_reads_its_own_stem():
    torch.manual_seed(0)
    student = _tiny(2).train()
    teacher = copy.deepcopy(student).eval()
    images = torch.rand(2, 3, 64, 64)
    student(images).mask_logits.square().mean().backward()
    assert student.fine_masks.out.weight.grad.abs().sum() > 0  # the stem correction gets a gradient
    assert student.backbone.embedder.embedder.last_output is None  # no activation kept between calls
    with torch.no_grad():
        student.fine_masks.out.weight.normal_()
        s, t = student.eval()(images).mask_logits, teacher(images).mask_logits
    assert not torch.allclose(s, t)
    teacher.load_state_dict(student.state_dict())
    with torch.no_grad():
        assert torch.allclose(teacher(images).mask_logits, s)


def test_init_weights_of_a_stride_2_model_fill_its_fine_mask_head(tmp_path):
    torch.manual_seed(0)
    trained = _tiny(2)
    with torch.no_grad():
        trained.fine_masks.out.weight.normal_()
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    cfg = load_config(ROOT / "configs" / "smoke.yaml",
                      ["model.mask_stride=2", f"model.init_weights={tmp_path / 'model.pt'}"])
    loaded = build_model(cfg.model, 10)
    assert torch.equal(loaded.fine_masks.out.weight, trained.fine_masks.out.weight)
