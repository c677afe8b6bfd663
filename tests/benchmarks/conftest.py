"""The benchmark scripts import their sibling ``report_text.py`` as a top-level module, as when run."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
