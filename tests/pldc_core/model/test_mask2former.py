from pathlib import Path

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
