import json

import numpy as np
import pytest

from pldc_core.data.coco import load_coco
from pldc_core.records.fabricated_run import fabricate_run
from pldc_core.records.store import decode_mask, load_records
from workbench.curation import CurationError, CurationStore, apply_edits, export_curated_coco


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fabricate_run(tmp_path_factory.mktemp("runs") / "run", n_images=6, n_queries=5, iterations=(500,))


def test_latest_decision_wins_and_survives_a_restart(tmp_path):
    store = CurationStore(tmp_path)
    store.record(500, [(1, 0), (1, 1), (2, 3)], "accept", source="test")
    store.record(500, [(1, 1)], "relabel", new_class=4)
    store.record(500, [(2, 3)], "clear")
    store.record(1000, [(1, 0)], "reject")
    again = CurationStore(tmp_path)  # a new process reading the same run
    e = again.edits(500).set_index(["image_id", "query"])
    assert sorted(e.index) == [(1, 0), (1, 1)]
    assert e.loc[(1, 0), "action"] == "accept" and e.loc[(1, 1), "action"] == "relabel"
    assert e.loc[(1, 1), "new_class"] == 4
    assert again.edits(1000)["action"].tolist() == ["reject"]


def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path):
    store = CurationStore(tmp_path)
    store.record(500, [(1, 0)], "accept")
    with open(store.path, "a") as f:
        f.write('{"iteration": 500, "image_id": 1, "query": 0, "act')
    assert store.edits(500)["action"].tolist() == ["accept"]


def test_bad_edits_are_refused(tmp_path):
    store = CurationStore(tmp_path)
    with pytest.raises(CurationError, match="unknown action 'approve'"):
        store.record(500, [(1, 0)], "approve")
    with pytest.raises(CurationError, match="relabel needs the new class"):
        store.record(500, [(1, 0)], "relabel")


def test_apply_edits_sets_final_class():
    import pandas as pd

    q = pd.DataFrame({"image_id": [1, 1, 2], "query": [0, 1, 0], "pred_class": [3, 5, 2]})
    e = pd.DataFrame({"image_id": [1, 2], "query": [1, 0], "action": ["relabel", "reject"],
                      "new_class": pd.array([0, None], dtype="Int64")})
    out = apply_edits(q, e)
    assert out["final_class"].tolist() == [3, 0, 2]
    assert out["curation"].tolist() == [None, "relabel", "reject"]


def test_export_is_a_coco_file_the_trainer_loads(run, tmp_path):
    rec = load_records(run, 500)
    q = rec.queries[rec.queries["area"] > 0]
    a, b, c = q.iloc[0], q.iloc[1], q.iloc[2]
    store = CurationStore(run)
    store.record(500, [(a.image_id, a.query)], "accept")
    store.record(500, [(b.image_id, b.query)], "relabel", new_class=(int(b.pred_class) + 1) % 8)
    store.record(500, [(c.image_id, c.query)], "reject")
    out = tmp_path / "curated.json"
    stats = export_curated_coco(run, 500, out)
    assert (stats["annotations"], stats["accepted"], stats["relabelled"], stats["rejected"]) == (2, 1, 1, 1)
    index = load_coco(out, rec.manifest["image_root"])  # validates ids, categories, masks, image files
    anns = {(x["image_id"], x["pldc_source"]["query"]): x for x in json.loads(out.read_text())["annotations"]}
    cats = rec.manifest["categories"]
    assert anns[(a.image_id, a.query)]["category_id"] == cats[int(a.pred_class)]["id"]
    assert anns[(b.image_id, b.query)]["category_id"] == cats[(int(b.pred_class) + 1) % 8]["id"]
    assert (c.image_id, c.query) not in anns
    masks, labels, ann_ids = index.instances(int(a.image_id))
    k = [i for i, aid in enumerate(ann_ids.tolist()) if anns[(a.image_id, a.query)]["id"] == aid][0]
    np.testing.assert_array_equal(masks[k].numpy(), decode_mask(a))
    kept = export_curated_coco(run, 500, tmp_path / "with_kept.json", include_kept=True)
    unreviewed_kept = int((q["keep_ddtf"]).sum()) - int(a.keep_ddtf) - int(b.keep_ddtf) - int(c.keep_ddtf)
    assert kept["annotations"] == 2 + unreviewed_kept


def test_relabel_to_a_class_the_run_lacks_is_refused(run, tmp_path):
    store = CurationStore(tmp_path / "copy")
    import shutil

    shutil.copytree(run, tmp_path / "copy", dirs_exist_ok=True)
    q = load_records(tmp_path / "copy", 500).queries
    q = q[q["area"] > 0]
    store.record(500, [(q.iloc[0].image_id, q.iloc[0].query)], "relabel", new_class=99)
    with pytest.raises(CurationError, match="class index 99 is not one of the run's 8 categories"):
        export_curated_coco(tmp_path / "copy", 500, tmp_path / "x.json")
