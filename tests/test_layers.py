"""The layers point one way: pldc_core (engine) <- workbench (analysis) <- apps (front ends).

Scanned from the source (no imports run): every ``import``/``from`` statement, relative ones
resolved, and every string that names one of our modules (the CLI imports its subcommands
by name), so a dispatch table cannot point upwards either.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("pldc_core", "workbench", "apps")
MODULE_NAME = re.compile(r"^(pldc_core|workbench|apps)(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Third-party packages a layer must not import: the analysis stays free of torch and of UIs.
FORBIDDEN = {"workbench": ("torch", "torchvision", "transformers", "open_clip", "gradio", "fiftyone")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _references(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every module ``path`` imports or names in a string."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            found.append((node.lineno, node.value))
    return found


def _sources(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_layer_above_it(layer):
    above = LAYERS[LAYERS.index(layer) + 1:]
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}"
           for path in _sources(layer) for line, module in _references(path)
           if module.split(".")[0] in above]
    assert not bad, f"{layer} must not import {above}:\n" + "\n".join(bad)


def test_workbench_imports_neither_torch_nor_a_ui():
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}"
           for path in _sources("workbench") for line, module in _references(path)
           if module.split(".")[0] in FORBIDDEN["workbench"]]
    assert not bad, "\n".join(bad)


def test_the_scan_sees_relative_imports_and_module_names_in_strings(tmp_path, monkeypatch):
    pkg = tmp_path / "pldc_core" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text('from ..x import y\nCOMMANDS = {"app": ("apps.gradio_app", "help")}\n')
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert {m for _, m in _references(pkg / "mod.py")} >= {"pldc_core.x", "pldc_core.x.y", "apps.gradio_app"}


def test_reading_records_and_every_analysis_load_no_torch():
    """``import workbench.report`` (and every other analysis module) in a fresh interpreter loads
    no torch, gradio or fiftyone. (How long the import takes is measured by
    benchmarks/bench_imports.py, not asserted here: a timed test fails on a busy machine.)"""
    modules = [_module_name(p) for p in _sources("workbench")] + ["pldc_core.records.store"]
    code = ("import sys\n"
            "import workbench.report\n"
            f"for name in {modules!r}:\n"
            "    __import__(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gradio', 'fiftyone')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
