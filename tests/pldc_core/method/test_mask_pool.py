"""DICC's mask_pool mode with tiny random CLIPs the tests build: a timm ConvNeXt and a ModifiedResNet tower."""
import json

import pytest
import torch
import torch.nn.functional as F

from pldc_core.method.dicc import ClipClassifier, classifier_for_mode, load_run_clip
from pldc_core.method.mask_pool import MaskPoolClassifier, NotDense, mask_pool
from tests.tiny import TINY_CLIP_CFG, TINY_CONVNEXT_CLIP_CFG, TINY_RESNET_CLIP_CFG, tiny_clip_weights

NAMES = ["cat", "dog", "car"]


def test_mask_pool_averages_the_features_under_the_mask_by_hand():
    # 2 x 2 cells of 2 x 2 px; channel 0 holds 1, 2 / 3, 4 and channel 1 ten times that
    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]])
    masks = torch.zeros(4, 4, 4, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True            # all of cell (0, 0)
    masks[1, 0:2, 0:3] = True            # cell (0, 0) and half of cell (0, 1): (1 + 0.5 * 2) / 1.5
    masks[2, 3, 3] = True                # a quarter of cell (1, 1): its value alone
    pooled = mask_pool(features, masks, stride=2)
    assert torch.allclose(pooled, torch.tensor([[1.0, 10.0], [4 / 3, 40 / 3], [4.0, 40.0], [0.0, 0.0]]))
    # a 3 x 3 canvas on the same cells (padded at the bottom and right): the middle pixel is in cell (1, 1)
    odd = torch.zeros(2, 3, 3, dtype=torch.bool)
    odd[0] = True                        # cells weigh 4, 2, 2, 1 px: (4*1 + 2*2 + 2*3 + 1*4) / 9
    odd[1, 1:3, 1:3] = True              # one pixel of each cell: the plain mean 2.5
    assert torch.allclose(mask_pool(features, odd, 2)[:, 0], torch.tensor([18 / 9, 2.5]))
    with pytest.raises(ValueError, match="reach past 2x2 feature cells of 2 px"):
        mask_pool(features, torch.ones(1, 5, 4, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="bool"):
        mask_pool(features, masks.float(), 2)


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mask-pool-clips")
    out = {}
    for name, cfg in (("pldc-tiny-convnext", TINY_CONVNEXT_CLIP_CFG), ("pldc-tiny-resnet", TINY_RESNET_CLIP_CFG),
                      ("pldc-tiny-vit", TINY_CLIP_CFG)):
        weights = tiny_clip_weights(folder, name, cfg)
        clip = ClipClassifier.load(name, pretrained=str(weights))
        clip.set_categories(NAMES)
        out[name] = clip
    return out


def _image(seed, side=64):
    return torch.rand(3, side, side, generator=torch.Generator().manual_seed(seed))


def test_convnext_a_whole_image_mask_gives_exactly_the_image_embedding(tiny_clips):
    clip = tiny_clips["pldc-tiny-convnext"]
    pool = classifier_for_mode(clip, "mask_pool")
    assert isinstance(pool, MaskPoolClassifier) and pool.tower.stride == 32
    image = _image(0)
    with torch.no_grad():
        whole = F.normalize(clip.model.encode_image(((image - clip.mean) / clip.std)[None]), dim=-1)
    assert torch.allclose(pool.embed(image, torch.ones(1, 64, 64, dtype=torch.bool)), whole, atol=1e-5)


def test_convnext_embedding_is_the_head_of_the_features_pooled_under_the_mask(tiny_clips):
    clip = tiny_clips["pldc-tiny-convnext"]
    pool = classifier_for_mode(clip, "mask_pool")
    image = _image(1, 80)                 # not a multiple of 32: padded to 96 with the mean colour
    masks = torch.zeros(2, 80, 80, dtype=torch.bool)
    masks[0, 0:32, 32:64] = True          # exactly feature cell (0, 1)
    masks[1, 40:80, 0:20] = True
    visual = clip.model.visual
    with torch.no_grad():
        x = F.pad((image - clip.mean) / clip.std, (0, 16, 0, 16))
        fmap = visual.trunk.forward_features(x[None])[0]
        assert fmap.shape[-2:] == (3, 3)
        expected = visual.head(visual.trunk.forward_head(fmap[:, 0, 1][None, :, None, None]))
    got = pool.embed(image, masks)
    assert torch.allclose(got[0], F.normalize(expected, dim=-1)[0], atol=1e-5)
    assert not torch.allclose(got[0], got[1], atol=1e-3)


def test_resnet_embedding_is_the_value_of_the_mask_mean_through_the_attention_pool(tiny_clips):
    clip = tiny_clips["pldc-tiny-resnet"]
    pool = classifier_for_mode(clip, "mask_pool")
    visual = clip.model.visual
    image = _image(2)
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, :, 0:32] = True              # the left column of the 2 x 2 cells
    with torch.no_grad():
        x = ((image - clip.mean) / clip.std)[None]
        fmap = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))[0]
        mean = fmap[:, :, 0].mean(dim=1)
        attn = visual.attnpool
        expected = attn.c_proj(attn.v_proj(mean + attn.positional_embedding[0]))
    assert torch.allclose(pool.embed(image, masks)[0], F.normalize(expected, dim=0), atol=1e-5)


@pytest.mark.parametrize("name", ["pldc-tiny-convnext", "pldc-tiny-resnet"])
def test_probs_formula_empty_masks_and_low_resolution_masks(tiny_clips, name):
    clip = tiny_clips[name]
    pool = classifier_for_mode(clip, "mask_pool")
    image = _image(3)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[0, 0:40, 0:20] = True
    masks[1, 30:64, 10:64] = True         # masks[2] is empty
    probs = pool.probs(image, masks)
    assert probs.shape == (3, 3) and torch.allclose(probs.sum(1), torch.ones(3), atol=1e-6)
    expected = (clip.model.logit_scale.exp() * pool.embed(image, masks) @ clip.text_embeddings.T).softmax(1)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs[2], torch.full((3,), 1 / 3))  # nothing to see: CLIP says nothing
    assert pool.probs(image, masks[:0]).shape == (0, 3)
    # masks at a quarter of the image's resolution cover the same canvas
    small = torch.zeros(1, 16, 16, dtype=torch.bool)
    small[0, 0:8, 8:16] = True
    full = torch.zeros(1, 64, 64, dtype=torch.bool)
    full[0, 0:32, 32:64] = True
    assert torch.allclose(pool.probs(image, small), pool.probs(image, full), atol=1e-6)


def test_a_tower_without_a_feature_map_is_refused(tiny_clips):
    with pytest.raises(NotDense, match=r"mask_pool needs a convolutional CLIP image tower .* my-vit has a "
                                       r"VisionTransformer"):
        classifier_for_mode(tiny_clips["pldc-tiny-vit"], "mask_pool", "my-vit")
    with pytest.raises(ValueError, match="unknown DICC mode 'crop'"):
        classifier_for_mode(tiny_clips["pldc-tiny-vit"], "crop")


def test_load_run_clip_builds_the_mode_with_the_descriptions(tiny_clips, tmp_path):
    from pldc_core.config import PldcConfig

    weights = tiny_clip_weights(tmp_path, "pldc-tiny-run-convnext", TINY_CONVNEXT_CLIP_CFG)
    descriptions = tmp_path / "classes.json"
    descriptions.write_text(json.dumps({"dog": ["a dog", "a puppy"]}))
    cfg = PldcConfig(clip_model="pldc-tiny-run-convnext", clip_weights=str(weights), dicc_mode="mask_pool",
                     class_descriptions=str(descriptions))
    pool = load_run_clip(cfg, NAMES)
    assert isinstance(pool, MaskPoolClassifier)
    crop = load_run_clip(PldcConfig(clip_model="pldc-tiny-run-convnext", clip_weights=str(weights),
                                    dicc_crop="component", class_descriptions=str(descriptions)), NAMES)
    assert isinstance(crop, ClipClassifier) and crop.crop_mode == "component"
    assert torch.allclose(pool.text_embeddings, crop.text_embeddings)
    plain = load_run_clip(PldcConfig(clip_model="pldc-tiny-run-convnext", clip_weights=str(weights)), NAMES)
    assert torch.allclose(plain.text_embeddings[[0, 2]], crop.text_embeddings[[0, 2]], atol=1e-6)
    assert not torch.allclose(plain.text_embeddings[1], crop.text_embeddings[1], atol=1e-3)
    descriptions.write_text(json.dumps({"dgo": ["a dog"]}))
    with pytest.raises(ValueError, match=r"classes\.json: unknown class name\(s\) 'dgo'"):
        load_run_clip(cfg, NAMES)


def test_teacher_step_with_mask_pool(tiny_clips):
    from pldc_core.method.filters import Thresholds
    from pldc_core.method.pseudo_labels import dicc_fuse, masks_at_size
    from pldc_core.method.teacher_step import label_outputs

    pool = classifier_for_mode(tiny_clips["pldc-tiny-convnext"], "mask_pool")
    gen = torch.Generator().manual_seed(4)
    class_logits = torch.randn(2, 5, len(NAMES) + 1, generator=gen)
    mask_logits = torch.randn(2, 5, 16, 16, generator=gen) * 4
    images = torch.rand(2, 3, 64, 64, generator=gen)
    out = label_outputs(class_logits, mask_logits, images, thresholds=Thresholds("ddtf", 0.0, 0.0, 0.0),
                       clip=pool, w=0.5)
    assert sum(len(p) for p in out) > 0
    for i, labels in enumerate(out):
        if not len(labels):
            continue
        full = masks_at_size(mask_logits[i][labels.kept.keep_idx], (64, 64))
        expected = pool.probs(images[i], full)
        assert torch.allclose(labels.clip_probs, expected, atol=1e-6)
        assert torch.equal(labels.labels, dicc_fuse(labels.kept.probs, expected, 0.5)[1])
