"""DICC's CLIP plumbing, end to end, with a tiny randomly initialised open_clip model."""
import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

from pldc_core.method.dicc import ClipClassifier, DiccWeightsMissing, largest_component

TINY = "pldc-tiny-test-clip"
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
NAMES = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip_cfg") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="module")
def clf(tiny_name):
    torch.manual_seed(0)
    c = ClipClassifier.load(tiny_name, allow_random=True)
    c.set_categories(NAMES)
    return c


def normalised(clf, pixels):
    return (pixels - clf.mean) / clf.std


def test_square_mask_crop_is_exactly_the_box(clf):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:24, 8:24] = True  # a 16 px box, crop size 16: one image pixel per crop pixel
    crops = clf.crops(image, masks)
    assert crops.shape == (1, 3, 16, 16)
    assert torch.allclose(crops[0], normalised(clf, image[:, 8:24, 8:24]), atol=1e-5)


def test_background_outside_the_mask_is_blank(clf):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:24, 8:12] = True  # an L inside the box rows 8..23, cols 8..23
    masks[0, 20:24, 8:24] = True
    crop = clf.crops(image, masks)[0]
    inside = masks[0, 8:24, 8:24]
    assert torch.all(crop[:, ~inside] == 0)  # blank = CLIP's mean colour = 0 after normalisation
    expected = normalised(clf, image[:, 8:24, 8:24])
    assert torch.allclose(crop[:, inside], expected[:, inside], atol=1e-5)


def test_wide_mask_is_padded_to_a_square_not_stretched(clf):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:16, 8:24] = True  # 8 x 16 -> square box rows 4..19, cols 8..23
    crop = clf.crops(image, masks)[0]
    assert torch.all(crop[:, :4] == 0) and torch.all(crop[:, 12:] == 0)
    assert torch.allclose(crop[:, 4:12], normalised(clf, image[:, 8:16, 8:24]), atol=1e-5)


def test_mask_at_the_image_edge_and_empty_mask(clf):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, 0:16, 0:8] = True  # 16 x 8 in the corner -> square box cols -4..11, partly outside
    crops = clf.crops(image, masks)
    assert torch.all(crops[0, :, :, :4] == 0) and torch.all(crops[0, :, :, 12:] == 0)
    assert torch.allclose(crops[0, :, :, 4:12], normalised(clf, image[:, 0:16, 0:8]), atol=1e-5)
    assert torch.all(crops[1] == 0)  # an empty mask gives a blank crop


def test_low_resolution_masks_cover_the_same_canvas(clf):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(4))
    small = torch.zeros(1, 8, 8, dtype=torch.bool)
    small[0, 2:6, 2:6] = True  # = image pixels 8..23
    crop = clf.crops(image, small)[0]
    # the box is the same as at full resolution; the mask's coverage is interpolated at its edge
    assert torch.allclose(crop[:, 4:12, 4:12], normalised(clf, image[:, 12:20, 12:20]), atol=1e-5)
    assert crop.abs().sum() > 0


def test_largest_component_keeps_the_biggest_8_connected_part():
    masks = torch.zeros(3, 12, 14, dtype=torch.bool)
    masks[0, 1:5, 1:5] = True          # 16 px
    masks[0, 9:11, 10:13] = True       # 6 px, far away
    masks[0, 6, 6] = True              # a stray pixel
    masks[1, 2:10, 3] = True           # a diagonal touch joins two bars into one part (8-connected)
    masks[1, 10, 4:12] = True
    masks[1, 0, 13] = True
    out = largest_component(masks)
    expected0 = torch.zeros(12, 14, dtype=torch.bool)
    expected0[1:5, 1:5] = True
    assert torch.equal(out[0], expected0)
    assert out[1].sum() == 16 and not out[1, 0, 13]
    assert not out[2].any()            # an empty mask stays empty
    assert largest_component(torch.zeros(0, 5, 5, dtype=torch.bool)).shape == (0, 5, 5)
    with pytest.raises(ValueError, match="bool"):
        largest_component(masks.float())


def test_largest_component_of_masks_not_contiguous_in_memory():
    # decoded RLE masks are column-major (pycocotools), stacked they are not contiguous
    masks = torch.zeros(2, 9, 7, dtype=torch.bool)
    masks[0, 1:4, 1:4] = True
    masks[0, 7, 6] = True
    masks[1, 5:9, 0:2] = True
    strided = masks.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    assert torch.equal(largest_component(strided), largest_component(masks))
    assert largest_component(strided)[0].sum() == 9


def test_component_crop_mode_frames_the_object_not_its_stray_pixels(clf):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:24, 8:24] = True
    stray = masks.clone()
    stray[0, 31, 0] = True             # one stray pixel stretches the box to the whole image
    assert clf.crop_mode == "box"
    assert not torch.allclose(clf.crops(image, stray), clf.crops(image, masks), atol=1e-3)
    clf.crop_mode = "component"
    try:
        assert torch.allclose(clf.crops(image, stray), clf.crops(image, masks), atol=1e-6)
    finally:
        clf.crop_mode = "box"


def test_crops_reject_non_bool_masks(clf):
    with pytest.raises(ValueError, match="bool"):
        clf.crops(torch.rand(3, 8, 8), torch.ones(1, 8, 8))


def test_probs_shape_sum_and_formula(clf):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(5))
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 0:10, 0:10] = True
    masks[1, 5:30, 12:20] = True
    masks[2, 20:32, 0:32] = True
    probs = clf.probs(image, masks)
    assert probs.shape == (3, len(NAMES))
    assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-6) and torch.all(probs > 0)
    model = clf.model
    with torch.no_grad():
        img = F.normalize(model.encode_image(clf.crops(image, masks)), dim=-1)
        txt = F.normalize(model.encode_text(clf.tokenizer([f"a photo of a {n}." for n in NAMES])), dim=-1)
        expected = (model.logit_scale.exp() * img @ txt.T).softmax(-1)
    assert torch.allclose(probs, expected, atol=1e-5)
    assert clf.probs(image, masks[:0]).shape == (0, len(NAMES))


def test_text_embeddings_are_encoded_once(tiny_name, monkeypatch):
    c = ClipClassifier.load(tiny_name, allow_random=True)
    calls = []
    original = c.model.encode_text
    monkeypatch.setattr(c.model, "encode_text", lambda *a, **k: calls.append(1) or original(*a, **k))
    with pytest.raises(RuntimeError, match="set_categories"):
        c.probs(torch.rand(3, 16, 16), torch.ones(1, 16, 16, dtype=torch.bool))
    c.set_categories(NAMES, template="a picture of a {}")
    masks = torch.ones(2, 16, 16, dtype=torch.bool)
    c.probs(torch.rand(3, 16, 16), masks)
    c.probs(torch.rand(3, 16, 16), masks)
    assert len(calls) == 1 and c.text_embeddings.shape == (3, 16)
    assert torch.allclose(c.text_embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_load_from_a_local_checkpoint(tiny_name, tmp_path):
    torch.manual_seed(1)
    source = open_clip.create_model(tiny_name, pretrained=None)
    with torch.no_grad():
        source.logit_scale.fill_(1.234)
    path = tmp_path / "tiny_clip.pt"
    torch.save(source.state_dict(), path)
    loaded = ClipClassifier.load(tiny_name, pretrained=str(path))
    for (name, a), b in zip(source.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    direct = ClipClassifier(source, loaded.mean.flatten().tolist(), loaded.std.flatten().tolist(),
                            loaded.tokenizer, loaded.image_size)
    for c in (loaded, direct):
        c.set_categories(NAMES)
    image, masks = torch.rand(3, 24, 24), torch.ones(1, 24, 24, dtype=torch.bool)
    assert torch.allclose(loaded.probs(image, masks), direct.probs(image, masks), atol=1e-6)


class _ParameterHolder(torch.nn.Module):
    """The parameters of a CLIP model under the same names, scriptable (like OpenAI's archives)."""

    def __init__(self, clip):
        super().__init__()
        for name, child in clip.named_children():
            setattr(self, name, child)
        for name, param in clip.named_parameters(recurse=False):
            setattr(self, name, param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")  # torch.jit deprecation notes
def test_load_from_a_torchscript_archive_like_openai_files(tiny_name, tmp_path):
    torch.manual_seed(2)
    source = open_clip.create_model(tiny_name, pretrained=None)
    path = tmp_path / "RN50.pt"
    torch.jit.script(_ParameterHolder(source)).save(str(path))
    loaded = ClipClassifier.load(tiny_name, pretrained=str(path))
    for (name, a), b in zip(source.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    # OpenAI's models use QuickGELU; the model is built to match
    assert type(loaded.model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_image_size_override(tiny_name):
    c = ClipClassifier.load(tiny_name, allow_random=True, image_size=32)
    assert c.image_size == 32
    assert c.crops(torch.rand(3, 20, 20), torch.ones(1, 20, 20, dtype=torch.bool)).shape == (1, 3, 32, 32)


def test_missing_weights_say_how_to_supply_them(tiny_name, tmp_path, monkeypatch):
    with pytest.raises(DiccWeightsMissing) as err:
        ClipClassifier.load("RN50")
    message = str(err.value)
    assert "no CLIP weights" in message and "pldc.clip_weights=/path/to/checkpoint.pt" in message
    assert "pldc.clip_weights=openai" in message and "pldc.dicc=false" in message

    missing = tmp_path / "nowhere" / "RN50.pt"
    with pytest.raises(DiccWeightsMissing, match="no such file") as err:
        ClipClassifier.load("RN50", pretrained=str(missing))
    assert str(missing) in str(err.value) and "pldc.dicc=false" in str(err.value)

    def offline(*args, **kwargs):
        raise OSError("offline: cannot reach huggingface.co")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(DiccWeightsMissing, match="could not be fetched from the hub") as err:
        ClipClassifier.load("RN50", pretrained="openai")
    assert "offline" in str(err.value) and "pldc.dicc=false" in str(err.value)

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(DiccWeightsMissing, match="could not be loaded from that file"):
        ClipClassifier.load(tiny_name, pretrained=str(broken))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown CLIP model 'RN51'"):
        ClipClassifier.load("RN51", pretrained="openai")


def test_largest_component_on_the_cpu_matches_the_pooling_version_ties_included():
    torch.manual_seed(0)
    noise = torch.nn.functional.avg_pool2d(torch.rand(64, 1, 40, 36), 5, stride=1, padding=2)[:, 0]
    masks = noise > noise.flatten(1).quantile(0.6, dim=1)[:, None, None]  # blobs of many sizes
    tie = torch.zeros(1, 40, 36, dtype=torch.bool)
    tie[0, 2:5, 2:5] = tie[0, 30:33, 20:23] = True  # two 9-pixel parts
    masks = torch.cat([masks, tie])
    pooled = largest_component(masks, max_iters=40 + 36)  # a given max_iters takes the pooling path
    assert torch.equal(largest_component(masks), pooled)
    assert pooled[-1].sum() == 9
