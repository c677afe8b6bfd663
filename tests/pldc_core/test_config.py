from pathlib import Path

import pytest
import yaml

from pldc_core.config import ConfigError, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_are_the_papers():
    cfg = load_config()
    assert (cfg.pldc.c_t, cfg.pldc.m_t, cfg.pldc.s_t) == (0.85, 0.9, 0.765)
    assert cfg.train.ema_alpha == 0.9996 and cfg.train.unsup_weight == 1.0
    assert cfg.train.lr == 1e-4 and cfg.train.weight_decay == 1e-4


def test_yaml_base_chain_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ntrain: {max_iters: 100, burn_in_iters: 10}\npldc: {c_t: 0.7}\n")
    (tmp_path / "exp.yaml").write_text("base: base.yaml\nname: exp\npldc: {m_t: 0.6}\n")
    cfg = load_config(tmp_path / "exp.yaml", ["train.burn_in_iters=20", "pldc.dicc=false", "pldc.filter=coupled"])
    assert cfg.name == "exp"
    assert cfg.train.max_iters == 100 and cfg.train.burn_in_iters == 20
    assert (cfg.pldc.c_t, cfg.pldc.m_t, cfg.pldc.dicc, cfg.pldc.filter) == (0.7, 0.6, False, "coupled")


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(None, ["pldc.c_t=0.5", "data.percent=2"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and again.hash() == cfg.hash()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["pldc"]["c_t"] == 0.5


@pytest.mark.parametrize("override, message", [
    ("pldc.c_t=1.5", "pldc.c_t: must be in [0, 1]"),
    ("pldc.m_t=-0.1", "pldc.m_t: must be in [0, 1]"),
    ("pldc.s_t=2", "pldc.s_t: must be in [0, 1]"),
    ("pldc.threshold=0.5", "pldc: unknown key(s) threshold"),
    ("trainer.lr=0.1", "unknown key(s) trainer"),
    ("train.max_iters=ten", "train.max_iters: expected an integer"),
    ("pldc.dicc=maybe", "pldc.dicc: expected true/false"),
    ("train.amp_cpu=sometimes", "train.amp_cpu: must be true, false or auto, got 'sometimes'"),
    ("train.student_from_ema=true", "train.student_from_ema: needs train.ema_from_start: true"),
    ("pldc.filter=single", "pldc.filter: must be 'ddtf' or 'coupled'"),
    ("train.burn_in_iters=999999", "train.burn_in_iters: must be in [0, max_iters"),
    ("data.image_size=100", "data.image_size: must be a multiple of 32"),
    ("model.backbone=vgg", "model.backbone: unknown backbone"),
    ("model.mask_stride=8", "model.mask_stride: must be 4 or 2, got 8"),
    ("data.scale_range=[0,2]", "data.scale_range: must be [low, high] with 0 < low <= high"),
    ("data.scale_range=[1.5,0.5]", "data.scale_range: must be [low, high] with 0 < low <= high"),
    ("data.scale_range=1.0", "data.scale_range: must be [low, high]"),
    ("train.semi_batch_labeled=0", "train.semi_batch_labeled: must be >= 1 (or null: train.batch_labeled)"),
    ("data.blur_sigma=[0,2]", "data.blur_sigma: must be [low, high] pixels with 0 < low <= high"),
    ("data.blur_sigma=[2,0.5]", "data.blur_sigma: must be [low, high] pixels with 0 < low <= high"),
    ("train.lr=fast", "train.lr: expected a number"),
    # values that used to pass and then crash the run mid-way (division by zero, a negative sample size...)
    ("model.num_heads=0", "model.num_heads: must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every: must be >= 1, got 0"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints: must be >= 1, got 0"),
    ("records.num_images=-3", "records.num_images: must be >= 1, got -3"),
    ("records.every=0", "records.every: must be >= 1"),
    ("data.eval_images=-1", "data.eval_images: must be >= 1"),
    ("data.num_workers=-2", "data.num_workers: must be >= 0"),
    ("model.test_top_k=0", "model.test_top_k: must be >= 1, got 0"),
    ("train.weight_decay=.nan", "train.weight_decay: must be a number >= 0, got nan"),
    ("train.grad_clip=-1", "train.grad_clip: must be a number >= 0, got -1.0 (0 turns clipping off)"),
    ("train.lr=.inf", "train.lr: must be a number > 0, got inf"),
    ("train.warmup_iters=-5", "train.warmup_iters: must be >= 0, got -5"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 5e-4 as a string; in a config file and in an override it is the number
    (tmp_path / "c.yaml").write_text("train:\n  lr: 5e-4\n")
    assert load_config(tmp_path / "c.yaml").train.lr == 5e-4
    assert load_config(None, ["train.lr=2e-3"]).train.lr == 2e-3


def test_missing_or_broken_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["pldc.c_t"])


def test_shipped_configs_are_valid():
    for name in ("paper", "cpu-quick", "smoke"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.name == name
    assert load_config(CONFIGS / "smoke.yaml").data.percent == 5  # inherited from cpu-quick


def _v1(raw: dict) -> dict:
    """A config as a run folder saved it before config_version existed: every key of that time."""
    from pldc_core.config import _V1_NEW_KEYS, from_dict

    old = from_dict(raw).to_dict()
    old.pop("config_version")
    old["model"].pop("pixel_decoder_feedforward")
    old["model"]["decoder_layers"] += 1  # transformers' count, as v1 saved it
    for section, key in _V1_NEW_KEYS:
        old[section].pop(key)
    for section, key in (("train", "lr_steps"), ("train", "lr_gamma"), ("pldc", "dicc_mode"),
                         ("pldc", "class_descriptions"), ("data", "cutout"), ("data", "extra_unlabeled")):
        old[section].pop(key)
    return old


def test_a_saved_version_1_config_loads_as_the_same_model_and_behaviour(tmp_path):
    import yaml

    from pldc_core.config import from_dict, load_config

    old = _v1({"model": {"decoder_layers": 3, "dim_feedforward": 256}})
    assert old["model"]["decoder_layers"] == 4 and "config_version" not in old
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    cfg = load_config(path, saved=True)
    assert cfg.config_version == 2
    assert (cfg.model.decoder_layers, cfg.model.pixel_decoder_feedforward) == (3, 256)
    assert (cfg.train.batch_scope, cfg.train.labeled_strong_view, cfg.pldc.mask_area_threshold) == ("per_rank", False, 0)
    assert (cfg.data.size_buckets, cfg.data.test_size) == ("rescaled", "train")
    assert from_dict(old, saved=True) == cfg
    # saved again (a resumed run re-saves its config) it stays the same
    assert from_dict(cfg.to_dict(), saved=True) == cfg
    # a hand-written file without the marker is read as today's keys
    assert load_config(path).model.decoder_layers == 4


def test_new_options_default_to_the_published_values():
    from pldc_core.config import ExperimentConfig

    cfg = ExperimentConfig()
    assert (cfg.train.batch_scope, cfg.train.labeled_strong_view, cfg.pldc.mask_area_threshold) == ("global", True, 5)
    assert (cfg.model.pixel_decoder_feedforward, cfg.data.cutout, cfg.pldc.dicc_mode) == (1024, "paper", "crop")


@pytest.mark.parametrize("override, message", [
    ("train.lr_schedule=step", r"train\.lr_steps: lr_schedule=step needs at least one step"),
    ("train.lr_steps=[10, 5]", r"train\.lr_steps: must be increasing"),
    ("data.test_size=[1333, 800]", r"data\.test_size: must be auto, train, full or \[short, max_long\]"),
    ("train.batch_scope=node", r"train\.batch_scope: must be 'global' or 'per_rank'"),
    ("config_version=3", r"config_version: 3 is not known"),
    (("pldc.dicc=false", "pldc.dicc_partial=true"), r"pldc\.dicc_partial: needs pldc\.dicc: true"),
])
def test_new_options_are_validated(override, message):
    from pldc_core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, [override] if isinstance(override, str) else list(override))


def test_dicc_modes():
    from pldc_core.config import ConfigError, load_config

    assert load_config(None, ["pldc.dicc_mode=mask_pool"]).pldc.dicc_mode == "mask_pool"
    with pytest.raises(ConfigError, match=r"pldc\.dicc_mode: must be 'crop' or 'mask_pool', got 'pool'"):
        load_config(None, ["pldc.dicc_mode=pool"])


def test_errors_about_the_file_name_it_and_overrides_stay_as_typed(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("name: exp\ntrian:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert str(err.value).startswith(f"{config}: unknown key(s) trian at the top level (did you mean 'train'?)")
    config.write_text("pldc:\n  c_t: 3\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: pldc\.c_t: must be in \[0, 1\], got 3"):
        load_config(config)
    # a value given as an override is not the file's fault: the message starts with the key
    with pytest.raises(ConfigError) as err:
        load_config(config, ["pldc.c_t=2"])
    assert str(err.value) == "pldc.c_t: must be in [0, 1], got 2.0"
    with pytest.raises(ConfigError) as err:
        load_config(config, ["pldc.c_t=0.5", "modle.backbone=tiny"])
    assert str(err.value).startswith("unknown key(s) modle at the top level (did you mean 'model'?)")
