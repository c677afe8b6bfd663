"""`pldc` command line: each subcommand lives in the module that owns it.

Each layer lists its own subcommands and adds them to the one below it: the engine's here,
``workbench.cli`` adds the report, ``apps.cli`` (the installed ``pldc``) adds the front ends.
So ``python -m pldc_core.cli train ...`` (e.g. under torchrun) needs nothing above the engine.
Each module listed provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Mapping

DISTRIBUTION = "pldc-workbench"

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("pldc_core.data.commands", "make the embedded dataset, splits, validate/convert datasets"),
    "pretrain": ("pldc_core.pretraining.commands", "remake the embedded upstream weights (backbone, CLIP)"),
    "train": ("pldc_core.training.command", "train a model (burn-in + PL-DC) from a YAML config"),
    "eval": ("pldc_core.eval_command", "evaluate a checkpoint (COCO mask AP, in percent)"),
    "predict": ("pldc_core.predict_command", "a checkpoint's instances on new images, as a COCO results JSON"),
    "pseudo-labels": ("pldc_core.records.command", "record the teacher's pseudo-labels of a checkpoint"),
    "clip-crops": ("pldc_core.records.clip_crops", "classify a run's GT instances with CLIP alone, per DICC mode (Table II)"),
}


def version() -> str:
    """The installed package's version (its metadata), or a note that it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as metadata_version

    try:
        return metadata_version(DISTRIBUTION)
    except PackageNotFoundError:
        return f"unknown ({DISTRIBUTION} is not installed; `pip install -e .` installs it)"


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (start-up stays fast)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the installed version and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {version()}")
        parser.exit()


@contextlib.contextmanager
def one_line_warnings(prog: str):
    """Show Python warnings as ``prog: warning: MESSAGE`` lines (no source file and line) while a command runs."""
    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"{prog}: warning: {text}", file=file or sys.stderr)

    original = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def build_parser(commands: Mapping[str, tuple[str, str]], command: str | None = None) -> argparse.ArgumentParser:
    """The ``pldc`` parser over ``commands``; only ``command``'s module is imported (start-up stays fast)."""
    parser = argparse.ArgumentParser(prog="pldc", description="PL-DC Workbench")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != command:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            p.set_defaults(_missing=module_name)
            continue
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None, commands: Mapping[str, tuple[str, str]] = COMMANDS) -> int:
    """Parse ``argv`` and run the chosen subcommand of ``commands``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(commands, command if command in commands else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"pldc {args.command}: not available in this build ({args._missing} is missing)", file=sys.stderr)
        return 2
    with one_line_warnings(f"pldc {args.command}"):
        return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
