"""`pldc fiftyone` as a user meets it: FiftyOne's own database checks on, the way to open the dataset
printed, and no MongoDB version notice."""
from __future__ import annotations

import ast
import logging
import re

import pytest

from apps.cli import main
from apps.fiftyone_app import export
from pldc_core.records.fabricated_run import fabricate_run

pytestmark = [pytest.mark.fiftyone, pytest.mark.slow]

NOTICE = "oldest supported major version of MongoDB"


def test_says_how_to_open_the_dataset_and_drops_only_the_mongodb_notice(tmp_path, capfd):
    from apps.fiftyone_app.database import private_database

    run = fabricate_run(tmp_path / "run", n_images=4, n_queries=5, iterations=(500,))
    (tmp_path / "db").mkdir()
    with private_database(tmp_path / "db") as (fo, _):
        import fiftyone.core.odm.database as fodb

        fo.config.database_validation = True  # FiftyOne's defaults, as `pldc fiftyone` runs for a user
        fo.config.database_admin = True
        assert main(["fiftyone", str(run), "--no-evaluate"]) == 0
        out, err = capfd.readouterr()
        assert NOTICE not in out + err
        assert f"open it with:  pldc fiftyone {run} --launch" in out
        python_line = next(line for line in out.splitlines() if line.startswith("or in Python:"))
        name = ast.literal_eval(re.search(r"fo\.load_dataset\((.+?)\)", python_line).group(1))
        assert "fo.launch_app(" in python_line and len(fo.load_dataset(name)) == 4  # the dataset just built

        # the notice is real here: without the filter the same connection prints it
        logging.getLogger("fiftyone.core.odm.database").removeFilter(export.MONGODB_NOTICE_FILTER)
        fodb._disconnect()
        fo.list_datasets()
        out, err = capfd.readouterr()
        assert NOTICE in out + err
