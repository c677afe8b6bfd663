"""`pldc pseudo-labels` (on-demand records of a checkpoint, on the run's data or own images) and `pldc clip-crops`."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from apps.cli import main
from pldc_core.records.store import list_record_iterations, load_records
from tests.pldc_core.training.test_training import smoke_cfg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """A finished smoke run (4 burn-in + 4 PL-DC steps) that recorded nothing itself."""
    from pldc_core.training.trainer import Trainer

    run = tmp_path_factory.mktemp("runs") / "run"
    trainer = Trainer(smoke_cfg(data_root, "records.enabled=false", "train.eval_every=100"), run)
    trainer.train()
    trainer.close()
    return run


def _cli(*args) -> int:
    return main(["pseudo-labels", *map(str, args)])


def test_records_a_checkpoint_on_its_unlabeled_images_with_gt(trained, data_root, tmp_path, capsys):
    from pldc_core.data.splits import load_split

    out = tmp_path / "on-demand"
    assert _cli("--checkpoint", trained, "--images", 5, "--run-dir", out) == 0
    assert "recorded 5 images" in capsys.readouterr().out
    rec = load_records(out)
    assert rec.manifest["iteration"] == 8 and rec.manifest["has_gt"] is True
    assert rec.manifest["dicc"] == {"enabled": False, "w": None}
    assert rec.images["image_id"].nunique() == 5 and len(rec.queries) == 5 * 8  # smoke: 8 queries
    unlabeled = load_split(data_root / "splits" / "synthetic.json", 25, 0)[1]
    assert set(rec.images["image_id"]) <= set(unlabeled)  # never the labeled images
    assert rec.queries["error_type"].notna().all() and rec.queries["corrected_class"].eq(-1).all()
    # the manifest holds the run's mask-area threshold, and the keep flags apply it
    area_t = rec.manifest["thresholds"]["mask_area_threshold"]
    assert area_t == smoke_cfg(data_root).pldc.mask_area_threshold
    assert not (rec.queries["keep_ddtf"] & (rec.queries["area"] <= area_t)).any()
    # the same seed samples the same images; another seed others
    assert _cli("--checkpoint", trained, "--images", 5, "--run-dir", out, "--overwrite") == 0
    assert load_records(out).images["image_id"].tolist() == rec.images["image_id"].tolist()
    assert _cli("--checkpoint", trained, "--images", 5, "--run-dir", out, "--overwrite", "--seed", 9) == 0
    assert load_records(out).images["image_id"].tolist() != rec.images["image_id"].tolist()


def test_teacher_flip_records_the_averaged_views_and_says_so(trained, tmp_path):
    plain_dir, flip_dir = tmp_path / "plain", tmp_path / "flip"
    assert _cli("--checkpoint", trained, "--images", 4, "--run-dir", plain_dir) == 0
    assert _cli("--checkpoint", trained, "--images", 4, "--run-dir", flip_dir, "--teacher-flip") == 0
    plain, flip = load_records(plain_dir), load_records(flip_dir)
    assert "teacher_flip" not in plain.manifest or plain.manifest["teacher_flip"] is False
    assert flip.manifest["teacher_flip"] is True
    assert plain.info.teacher_flip is False and flip.info.teacher_flip is True
    # the same images and queries, with other scores: the mirror's views are averaged in
    assert flip.images["image_id"].tolist() == plain.images["image_id"].tolist()
    assert len(flip.queries) == len(plain.queries)
    assert not np.allclose(flip.queries["c"].to_numpy(), plain.queries["c"].to_numpy())


def test_existing_records_are_kept_unless_overwrite(trained, tmp_path, capsys):
    out = tmp_path / "on-demand"
    assert _cli("--checkpoint", trained, "--images", 3, "--run-dir", out) == 0
    capsys.readouterr()
    assert _cli("--checkpoint", trained, "--images", 6, "--run-dir", out) == 1
    err = capsys.readouterr().err
    assert "iter_0000008 already holds records" in err and "--overwrite" in err
    assert load_records(out).manifest["num_images"] == 3


def test_own_images_without_annotations_give_gt_free_records(trained, data_root, tmp_path, capsys):
    own = tmp_path / "own"
    own.mkdir()
    for p in sorted((data_root / "synthetic" / "val").iterdir())[:3]:
        shutil.copy(p, own / p.name)
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(own / "nested.jpg")
    out = tmp_path / "own-records"
    assert _cli("--checkpoint", trained, "--image-dir", own, "--run-dir", out) == 0
    rec = load_records(out)
    assert rec.manifest["has_gt"] is False and len(rec.gt) == 0
    assert sorted(rec.images["file_name"]) == sorted(p.name for p in own.iterdir())
    assert rec.queries["error_type"].isna().all() and (rec.queries["gt_id"] == -1).all()
    assert rec.queries["iou"].isna().all() and rec.queries["unc_png"].notna().all()
    assert (rec.images.set_index("file_name").loc["nested.jpg", ["height", "width"]].tolist() == [40, 60])


def test_bad_input_is_reported_without_a_traceback(trained, tmp_path, capsys):
    assert _cli("--checkpoint", tmp_path / "nowhere") == 1
    assert "nowhere" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    assert _cli("--checkpoint", trained, "--image-dir", broken, "--run-dir", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "a.png" in err and "not a readable image" in err
    assert _cli("--checkpoint", trained, "--image-dir", tmp_path / "o2", "--run-dir", tmp_path / "o") == 1
    assert "o2: no images" in capsys.readouterr().err
    assert _cli("--checkpoint", trained, "--images", 0) == 2
    assert _cli("--checkpoint", trained, "--dicc-w", 0.3) == 2
    assert "need --dicc" in capsys.readouterr().err
    assert _cli("--checkpoint", trained, "--dicc", "--dicc-w", 1.5) == 2
    assert list_record_iterations(tmp_path / "o") == []


def test_dicc_needs_weights_and_records_clip_columns_with_them(trained, tmp_path, capsys):
    assert _cli("--checkpoint", trained, "--dicc", "--run-dir", tmp_path / "a") == 1
    err = capsys.readouterr().err
    assert "no CLIP weights" in err and "--clip-weights" in err and "Traceback" not in err

    import torch

    from tests.tiny import tiny_clip_weights

    weights = tiny_clip_weights(tmp_path, "pldc-tiny-cmd-clip")
    # the run's config names RN50; a checkpoint of another architecture does not load into it
    assert _cli("--checkpoint", trained, "--dicc", "--clip-weights", weights, "--run-dir", tmp_path / "a") == 1
    assert "could not be loaded" in capsys.readouterr().err

    from pldc_core.training import checkpoint as ckpt_mod

    state = ckpt_mod.load_checkpoint(trained)
    state["config"]["pldc"]["clip_model"] = "pldc-tiny-cmd-clip"
    (tmp_path / "ck" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "ck" / "checkpoints" / "ckpt_0000008.pt")
    out = tmp_path / "dicc"
    assert _cli("--checkpoint", tmp_path / "ck" / "checkpoints" / "ckpt_0000008.pt", "--dicc", "--clip-weights",
                weights, "--run-dir", out, "--images", 4) == 0
    # smoke: burn-in 4, max 8, so at iteration 8 training's w is 0.25 (cos(pi) + 1) = 0
    assert "DICC with w = 0.000" in capsys.readouterr().out
    rec = load_records(out)
    assert rec.manifest["dicc"] == {"enabled": True, "w": 0.0}
    kept = rec.queries[rec.queries["keep_ddtf"]]
    assert len(kept) and kept["clip_top5_probs"].notna().all() and (kept["corrected_class"] >= 0).all()
    assert (kept["corrected_class"] == kept["pred_class"]).all()  # w = 0: the teacher's class stands
    assert _cli("--checkpoint", tmp_path / "ck" / "checkpoints" / "ckpt_0000008.pt", "--dicc", "--clip-weights",
                weights, "--run-dir", out, "--images", 4, "--overwrite", "--dicc-w", 0.5) == 0
    assert load_records(out).manifest["dicc"]["w"] == 0.5


def test_clip_crops_compares_mask_pool_with_the_crops(trained, tmp_path, capsys):
    import torch

    from pldc_core.config import PldcConfig
    from pldc_core.data.coco import read_image
    from pldc_core.method.dicc import load_run_clip
    from pldc_core.records.store import decode_mask
    from tests.tiny import TINY_CONVNEXT_CLIP_CFG, tiny_clip_weights

    out = tmp_path / "rec"
    assert _cli("--checkpoint", trained, "--images", 3, "--run-dir", out) == 0
    capsys.readouterr()
    weights = tiny_clip_weights(tmp_path, "pldc-tiny-crops-convnext", TINY_CONVNEXT_CLIP_CFG)
    assert main(["clip-crops", str(out), "--clip-model", "pldc-tiny-crops-convnext", "--clip-weights", str(weights),
                 "--modes", "mask_pool,box", "--out", str(tmp_path / "modes.parquet")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  mask_pool  accuracy ") and lines[2].startswith("  box        accuracy ")
    assert "classes it predicts), mean recall" in lines[1] and lines[1].endswith("%") and "pldc report" in lines[3]
    table = pd.read_parquet(tmp_path / "modes.parquet")
    rec = load_records(out)
    assert table["mode"].tolist() == ["mask_pool"] * len(rec.gt) + ["box"] * len(rec.gt)
    # the mask_pool rows are the mask_pool classifier's classes
    names = [c["name"] for c in rec.manifest["categories"]]
    pool = load_run_clip(PldcConfig(clip_model="pldc-tiny-crops-convnext", clip_weights=str(weights),
                                    dicc_mode="mask_pool"), names)
    image_id = rec.gt["image_id"].iloc[0]
    first = rec.gt[rec.gt["image_id"] == image_id]
    image = read_image(Path(rec.manifest["image_root"]) /
                       rec.images.set_index("image_id").loc[image_id, "file_name"], 0)
    probs = pool.probs(image, torch.from_numpy(np.stack([decode_mask(r) for r in first.to_dict("records")])))
    got = table[(table["mode"] == "mask_pool") & (table["image_id"] == image_id)]
    assert got["clip_pred"].tolist() == probs.argmax(1).tolist()
    truth = first["gt_class"].to_numpy(np.int64)
    np.testing.assert_allclose(got["clip_prob_gt"], probs.numpy()[np.arange(len(first)), truth], atol=1e-5)


def test_clip_on_gt_crops_feeds_the_report(trained, tmp_path, capsys):
    import torch

    from pldc_core.method.dicc import ClipClassifier
    from pldc_core.records.store import decode_mask
    from tests.tiny import tiny_clip_weights

    out = tmp_path / "rec"
    assert _cli("--checkpoint", trained, "--images", 4, "--run-dir", out) == 0
    assert main(["clip-crops", str(out)]) == 1  # no weights anywhere
    assert "--clip-weights" in capsys.readouterr().err
    weights = tiny_clip_weights(tmp_path, "pldc-tiny-crops-clip")
    assert main(["clip-crops", str(out), "--clip-model", "pldc-tiny-crops-clip", "--clip-weights", str(weights)]) == 0
    captured = capsys.readouterr()
    assert "GT crops of iter_0000008" in captured.out
    assert "  box        accuracy" in captured.out and "  component  accuracy" in captured.out
    # a ViT has no feature map to pool: mask_pool is left out of the default comparison, saying why
    assert "mask_pool left out: mask_pool needs a convolutional CLIP image tower" in captured.err
    table = pd.read_parquet(out / "clip_gt_crops.parquet")
    rec = load_records(out)
    assert table["mode"].tolist() == ["box"] * len(rec.gt) + ["component"] * len(rec.gt) and len(rec.gt) > 0
    for mode in ("box", "component"):
        assert table.loc[table["mode"] == mode, ["image_id", "gt_id", "gt_class"]].to_numpy().tolist() == \
            rec.gt[["image_id", "gt_id", "gt_class"]].to_numpy().tolist()
    # the first image's crops, classified directly
    clip = ClipClassifier.load("pldc-tiny-crops-clip", pretrained=str(weights))
    clip.set_categories([c["name"] for c in rec.manifest["categories"]])
    first = rec.gt[rec.gt["image_id"] == rec.gt["image_id"].iloc[0]]
    from pldc_core.data.coco import read_image

    file_name = rec.images.set_index("image_id").loc[first["image_id"].iloc[0], "file_name"]
    image = read_image(Path(rec.manifest["image_root"]) / file_name, 0)
    probs = clip.probs(image, torch.from_numpy(np.stack([decode_mask(r) for r in first.to_dict("records")])))
    got = table[(table["image_id"] == first["image_id"].iloc[0]) & (table["mode"] == "box")]
    assert got["clip_pred"].tolist() == probs.argmax(1).tolist()
    np.testing.assert_allclose(got["clip_prob"], probs.max(1).values.numpy(), atol=1e-5)
    # pldc report reads the table from the run folder without being told, and compares the modes
    assert main(["report", str(out), "--no-png"]) == 0
    report = (out / "report" / "report.html").read_text()
    assert "CLIP on ground-truth crops, per DICC mode" in report and "<th>DICC mode</th>" in report
    assert main(["clip-crops", str(out), "--clip-model", "pldc-tiny-crops-clip", "--clip-weights", str(weights),
                 "--modes", "mask_pool"]) == 1
    assert "VisionTransformer" in capsys.readouterr().err  # asked for explicitly: an error
    assert main(["clip-crops", str(out), "--modes", "box,crop"]) == 1
    assert "--modes 'box,crop': expected a comma-separated list of box, component, mask_pool" in \
        capsys.readouterr().err

    own = tmp_path / "own"
    own.mkdir()
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(own / "a.png")
    assert _cli("--checkpoint", trained, "--image-dir", own, "--run-dir", tmp_path / "nogt") == 0
    assert main(["clip-crops", str(tmp_path / "nogt"), "--clip-weights", str(weights)]) == 1
    assert "no ground truth" in capsys.readouterr().err
