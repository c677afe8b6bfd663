"""What every `pldc` bad-input test checks: one error line naming the file, a non-zero exit, no
traceback, and a folder left exactly as it was."""
from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snapshot(path: Path) -> dict[str, tuple] | None:
    """Every file and folder under ``path``: files by content hash and modification time (None if absent)."""
    path = Path(path)
    if not path.exists():
        return None
    out: dict[str, tuple] = {}
    for entry in sorted([path, *path.rglob("*")]):
        rel = entry.relative_to(path).as_posix()
        if entry.is_file():
            out[rel] = ("file", hashlib.sha256(entry.read_bytes()).hexdigest(), entry.stat().st_mtime_ns)
        else:
            out[rel] = ("dir",)
    return out


def _limit_memory():  # a regression that rasterises a huge polygon fails here instead of exhausting the machine
    limit = 12 * 1024 ** 3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_pldc(*args, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``pldc ARGS`` (apps.cli, the installed command's module) in a fresh process, output captured."""
    full_env = {**os.environ, "PLDC_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "apps.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory)


def assert_one_error_line(stderr: str, prog: str, *expected: str) -> str:
    """``stderr`` is exactly one line ``pldc PROG: ...`` holding every ``expected`` text; returns it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith(f"pldc {prog}: "), line
    assert "Traceback" not in stderr
    for text in expected:
        assert str(text) in line, f"{text!r} not in {line!r}"
    return line
