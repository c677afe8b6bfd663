"""`pldc`, the installed command: every layer's subcommands, the front ends' included."""
from __future__ import annotations

import sys

from pldc_core import cli
from workbench import cli as workbench_cli

COMMANDS: dict[str, tuple[str, str]] = {
    **workbench_cli.COMMANDS,
    "app": ("apps.gradio_app.app", "open the Gradio workbench"),
    "fiftyone": ("apps.fiftyone_app.export", "build a FiftyOne dataset of a run's pseudo-labels"),
}


def main(argv: list[str] | None = None) -> int:
    """``pldc``: parse ``argv`` and run the chosen subcommand."""
    return cli.main(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
