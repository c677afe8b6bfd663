"""The engine's `pldc` subcommands plus the analysis layer's own (`pldc report`)."""
from __future__ import annotations

import sys

from pldc_core import cli

COMMANDS: dict[str, tuple[str, str]] = {
    **cli.COMMANDS,
    "report": ("workbench.report", "write the HTML report of a run"),
}


def main(argv: list[str] | None = None) -> int:
    """``pldc`` with the engine's and the workbench's subcommands."""
    return cli.main(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
