"""RecordSet.info: the records' manifest with types, for records of today and of earlier versions."""
import json

from pldc_core.records.fabricated_run import fabricate_run
from pldc_core.records.schema import MANIFEST_FILE, Manifest
from pldc_core.records.store import load_records, records_dir


def test_record_set_info_is_the_typed_manifest(tmp_path):
    run = fabricate_run(tmp_path / "run", n_images=4, n_queries=4, iterations=(500,))
    rec = load_records(run, 500, columns=["image_id"])
    info = rec.info
    assert isinstance(info, Manifest) and info is rec.info  # computed once
    assert info == Manifest.of(rec.manifest)
    assert (info.iteration, info.num_images, info.has_gt) == (500, 4, True)
    assert info.class_names == [c["name"] for c in rec.manifest["categories"]]
    assert info.thresholds.as_dict() == rec.manifest["thresholds"]


def test_records_written_before_the_typed_keys_stay_readable(tmp_path):
    run = fabricate_run(tmp_path / "run", n_images=4, n_queries=4, iterations=(500,))
    path = records_dir(run, 500) / MANIFEST_FILE
    old = json.loads(path.read_text())
    for key in ("num_images", "num_queries", "has_gt", "dicc", "created"):
        old.pop(key)
    path.write_text(json.dumps(old))
    info = load_records(run, 500, columns=["image_id"]).info
    assert info.num_images is None and info.has_gt is False
    assert (info.dicc_enabled, info.dicc_w) == (False, None)
    assert info.iteration == 500 and len(info.class_names) == len(old["categories"])
