from benchmarks.quality_table import ANALYSIS, write


def test_write_replaces_the_tables_and_keeps_the_analysis(tmp_path):
    dest = tmp_path / "quality.md"
    dest.write_text(f"# old tables\n\n{ANALYSIS} (a date)\n\nwhat the runs showed\n")
    write("# new tables\n", dest)
    assert dest.read_text() == f"# new tables\n\n{ANALYSIS} (a date)\n\nwhat the runs showed\n"
    assert not (tmp_path / "quality.md.bak").exists()


def test_write_backs_up_a_file_without_the_analysis_heading(tmp_path, capsys):
    dest = tmp_path / "quality.md"
    dest.write_text("# old tables\n\n## Analysis under another heading\n\nwhat the runs showed\n")
    write("# new tables\n", dest)
    assert dest.read_text() == "# new tables\n"
    assert (tmp_path / "quality.md.bak").read_text().endswith("what the runs showed\n")
    assert "quality.md.bak" in capsys.readouterr().err


def _finished(run, order, **aps):
    import json

    from pldc_core.config import load_config, save_config

    run.mkdir(parents=True)
    save_config(load_config(None, [f"train.seed={order}"]), run / "config.yaml")
    for model, ap in aps.items():
        (run / f"final_eval_{model}.json").write_text(json.dumps({"iteration": 6000, "model": model, "AP": ap}))


def test_data_orders_give_each_seed_the_mean_of_its_orders(tmp_path):
    from benchmarks.quality_table import data_orders

    seeds = [tmp_path / "seed0", tmp_path / "seed1"]
    _finished(seeds[0] / "supervised", 0, student=10.0)
    _finished(seeds[0] / "pldc", 0, teacher=13.0)
    _finished(seeds[0] / "supervised_order7", 7, student=12.0)
    _finished(seeds[0] / "pldc_order7", 7, teacher=13.0)
    _finished(seeds[0] / "pldc_order8", 8, teacher=20.0)  # its supervised-only run is missing: left out
    _finished(seeds[1] / "supervised", 1, student=10.0)
    _finished(seeds[1] / "pldc", 1, teacher=12.0)
    _finished(seeds[1] / "supervised_order7", 7, student=10.0)
    _finished(seeds[1] / "pldc_order7", 7, teacher=14.0)
    text = "\n".join(data_orders(seeds))
    assert "| 0 | 0 | 10.00% | 13.00% | +30% |" in text
    assert "| 0 | 7 | 12.00% | 13.00% | +8% |" in text
    assert "| 0 | 8 |" not in text
    assert "One run's gain over these orders: sd 13.6 percentage points, +8% to +40%." in text
    assert "| 0 | mean of 2 | 11.00% (sd 1.41, 10.00-12.00) | 13.00% (sd 0.00, 13.00-13.00) | +18% |" in text
    # seed means 13.0 and 13.0 against 11.0 and 10.0
    assert "PL-DC's teacher 13.00% against supervised-only 10.50%, gain **+23.8%**" in text
    assert ("Target on these means (>= 25%, beyond the seed spread): **not met** (lowest PL-DC seed mean 13.00% "
            "vs highest supervised seed mean 11.00%)") in text


def test_the_headline_verdict_says_when_it_rests_on_one_data_order(tmp_path):
    from benchmarks.quality_table import data_orders, headline

    seeds = [tmp_path / "seed0", tmp_path / "seed1"]
    for seed, order, sup, pldc in [(0, 0, 10.0, 13.0), (0, 7, 10.0, 11.0), (1, 1, 10.0, 13.0), (1, 7, 10.0, 11.0)]:
        suffix = "" if order == seed else f"_order{order}"
        _finished(seeds[seed] / f"supervised{suffix}", order, student=sup)
        _finished(seeds[seed] / f"pldc{suffix}", order, teacher=pldc, student=pldc)
    top = "\n".join(headline(tmp_path, seeds))
    assert ("**met** (gain +30.0%; lowest PL-DC seed 13.00% vs highest supervised seed 10.00%). This verdict "
            "rests on one data order per seed; 2 of the 2 seeds also ran in other orders") in top
    assert "Target on these means (>= 25%, beyond the seed spread): **not met**" in "\n".join(data_orders(seeds))
    for seed in (0, 1):  # without the reruns the headline's verdict is the only one
        for variant in ("supervised", "pldc"):
            (seeds[seed] / f"{variant}_order7" / "final_eval_student.json").unlink()
    top = "\n".join(headline(tmp_path, seeds))
    assert "**met** (gain +30.0%" in top and "data order" not in top


def _one_plain_seed(tmp_path):
    """Split seed 0 with its two headline runs, in its own data order only, without per-class AP."""
    _finished(tmp_path / "seed0" / "supervised", 0, student=10.0)
    _finished(tmp_path / "seed0" / "pldc", 0, teacher=13.0)
    return [tmp_path / "seed0"]


def test_no_data_orders_no_section(tmp_path):
    from benchmarks.quality_table import data_orders

    assert data_orders(_one_plain_seed(tmp_path)) == []


def test_order_variants_reseed_the_batches_of_the_main_variants():
    from benchmarks.bench_quality import MAIN_VARIANTS, order_variants

    variants = order_variants(["supervised", "pldc"], [7, 8])
    assert set(variants) == {"supervised_order7", "pldc_order7", "supervised_order8", "pldc_order8"}
    assert variants["supervised_order8"] == [*MAIN_VARIANTS["supervised"], "train.seed=8"]
    assert variants["pldc_order7"] == ["train.seed=7"]


def test_per_class_compares_the_headline_runs_class_by_class(tmp_path):
    import json

    from benchmarks.quality_table import per_class

    seeds = [tmp_path / "seed0", tmp_path / "seed1"]
    for seed_dir, (sup, tea) in zip(seeds, [({"disk": 20.0, "ellipse": 4.0}, {"disk": 26.0, "ellipse": 5.0}),
                                            ({"disk": 22.0, "ellipse": 6.0}, {"disk": 30.0, "ellipse": 6.0})]):
        for run, model, aps in (("supervised", "student", sup), ("pldc", "teacher", tea)):
            (seed_dir / run).mkdir(parents=True)
            (seed_dir / run / f"final_eval_{model}.json").write_text(json.dumps({"AP": 0.0, "AP_per_class": aps}))
    text = "\n".join(per_class(seeds))
    assert "mean of 2 split seeds" in text
    assert "| disk | 21.00% (20.00-22.00) | 28.00% (26.00-30.00) | +7.00 points |" in text
    assert "| ellipse | 5.00% (4.00-6.00) | 5.50% (5.00-6.00) | +0.50 points |" in text


def test_per_class_says_why_it_is_empty(tmp_path):
    from benchmarks.quality_table import per_class

    text = "\n".join(per_class(_one_plain_seed(tmp_path)))
    assert "No per-class AP: the final evaluations were written before `pldc eval` recorded it." in text


def _history(run, *entries):
    import json

    run.mkdir(parents=True, exist_ok=True)
    (run / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


CPU = {"device": "cpu", "device_name": "Some CPU", "threads": 1, "processes": 1}


def test_setup_of_names_each_change_of_precision_with_its_first_step(tmp_path):
    from benchmarks.quality_table import setup_of

    _history(tmp_path / "same", {**CPU, "iter": 0, "precision": "bfloat16"},
             {**CPU, "iter": 3000, "precision": "bfloat16"})
    assert setup_of(tmp_path / "same") == "bfloat16 on Some CPU, 1 thread"
    _history(tmp_path / "moved", {**CPU, "iter": 0, "precision": "float32"},
             {**CPU, "iter": 3000, "precision": "bfloat16", "threads": 2})
    assert setup_of(tmp_path / "moved") == ("float32 on Some CPU, 1 thread from step 0, "
                                            "then bfloat16 on Some CPU, 2 threads from step 3000")
    assert setup_of(tmp_path / "never") is None
    _history(tmp_path / "resumed", {**CPU, "iter": 3000, "precision": "bfloat16"})
    assert setup_of(tmp_path / "resumed") == ("not recorded from step 0, "
                                              "then bfloat16 on Some CPU, 1 thread from step 3000")


def test_training_setups_group_the_runs_and_say_which_were_not_recorded(tmp_path):
    from benchmarks.quality_table import training_setups

    seed = tmp_path / "seed0"
    for name in ("burn_in", "supervised", "pldc_order7"):
        _history(seed / name, {**CPU, "iter": 0, "precision": "bfloat16"})
    _history(seed / "pldc_flip", {**CPU, "iter": 0, "precision": "float32"})  # not a variant of the tables
    assert training_setups([seed]) == ["Trained (each run's `history.jsonl`): all 3 runs bfloat16 on Some CPU, "
                                       "1 thread.", ""]
    (seed / "pldc").mkdir()
    text = "\n".join(training_setups([seed]))
    assert "- bfloat16 on Some CPU, 1 thread: seed0/burn_in, seed0/pldc_order7, seed0/supervised" in text
    assert "- not recorded (trained before runs kept a history.jsonl): seed0/pldc" in text
