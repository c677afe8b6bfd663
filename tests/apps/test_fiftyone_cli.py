"""`pldc fiftyone` as a user meets it: FiftyOne's own database checks on, the way to open the dataset
printed, and no MongoDB version notice.

It runs in a process of its own: FiftyOne keeps one database connection per process, and the
other FiftyOne tests hold theirs (apps.fiftyone_app.database.private_database) for their module.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_checks import ROOT

pytestmark = [pytest.mark.fiftyone, pytest.mark.slow]

NOTICE = "oldest supported major version of MongoDB"

SCRIPT = r'''
import ast, contextlib, io, json, logging, re, sys
from pathlib import Path
from apps.cli import main
from apps.fiftyone_app import export
from apps.fiftyone_app.database import private_database
from pldc_core.records.fabricated_run import fabricate_run

class Records(logging.Handler):  # every message that reaches the fiftyone loggers' handlers (the console)
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []
    def emit(self, record):
        self.messages.append(record.getMessage())

tmp = Path(sys.argv[1])
run = fabricate_run(tmp / "run", n_images=4, n_queries=5, iterations=(500,))
(tmp / "db").mkdir()
seen = Records()
logging.getLogger("fiftyone").addHandler(seen)
result = {}
with private_database(tmp / "db") as (fo, _):
    import fiftyone.core.odm.database as fodb
    fo.config.database_validation = True  # FiftyOne's defaults, as `pldc fiftyone` runs for a user
    fo.config.database_admin = True
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result["code"] = main(["fiftyone", str(run), "--no-evaluate"])
    result["stdout"] = out.getvalue()
    result["logged"] = list(seen.messages)
    line = next(l for l in result["stdout"].splitlines() if l.startswith("or in Python:"))
    name = ast.literal_eval(re.search(r"fo\.load_dataset\((.+?)\)", line).group(1))
    result["samples_in_named_dataset"] = len(fo.load_dataset(name))
    # without the filter, FiftyOne's version check on the same database logs the notice
    logging.getLogger("fiftyone.core.odm.database").removeFilter(export.MONGODB_NOTICE_FILTER)
    fodb._update_fc_version(fodb._client)
    result["logged_without_filter"] = seen.messages[len(result["logged"]):]
print("RESULT " + json.dumps(result))
'''


def _stop_leftover_mongod(folder: Path) -> None:
    """Stop a mongod this test started on ``folder`` if the script could not (it never should)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "mongod" in cmdline and str(folder) in cmdline:
            os.kill(int(pid), signal.SIGTERM)


def test_says_how_to_open_the_dataset_and_drops_only_the_mongodb_notice(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FIFTYONE_DO_NOT_TRACK": "true", "PLDC_NO_PROGRESS": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        _stop_leftover_mongod(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
    assert result["code"] == 0
    assert NOTICE not in proc.stderr + result["stdout"] and not [m for m in result["logged"] if NOTICE in m]
    assert f"open it with:  pldc fiftyone {tmp_path / 'run'} --launch" in result["stdout"]
    assert result["samples_in_named_dataset"] == 4  # the printed Python line loads the dataset just built
    assert [m for m in result["logged_without_filter"] if NOTICE in m]  # the notice is real on this database
