"""`pldc app`: the Gradio workbench's command line. The app itself is ``demo.build_demo()``.

Tabs: Train (start, watch, stop, resume runs), Pseudo-labels (c-vs-m scatter with threshold
sliders and live what-if), Instance (one pseudo-label over its image), Confusion, Errors, DICC,
Compare and Curate, one module each under ``tabs/``. The run list and the run/checkpoint choice
stay visible in the sidebar. Gradio is imported only when the app starts: ``pldc`` imports
this module to build its parser, and gradio takes seconds to import.
"""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from apps.gradio_app import runs
from apps.gradio_app.context import AppSettings


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pldc app`."""
    parser.add_argument("--runs-dir", default="runs", help="folder of the runs (default: runs)")
    parser.add_argument("--data-root", default="data", help="folder of the datasets (default: data)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require this login; needed (and only allowed) when --host is not a loopback address")
    parser.add_argument("--run", metavar="NAME", help="open this run (a folder in --runs-dir)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (socket.gaierror, ValueError):
            return False


def check_args(args: argparse.Namespace) -> tuple[AppSettings, tuple[str, str] | None]:
    """The settings and the login from the command line; ValueError with a clear message if inconsistent."""
    auth = None
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth must be USER:PASSWORD, both non-empty")
        auth = (user, password)
    loopback = is_loopback(args.host)
    if not loopback and auth is None:
        raise ValueError(f"--host {args.host} makes the workbench reachable from other machines: "
                         "give --auth USER:PASSWORD")
    if loopback and auth is not None:
        raise ValueError(f"--auth is only for a workbench reachable from other machines; --host {args.host} is "
                         "this machine only (drop --auth, or bind another address)")
    runs_root, data_root = Path(args.runs_dir).resolve(), Path(args.data_root).resolve()
    if args.run is not None:
        try:
            path = runs.run_dir(runs_root, args.run)
        except runs.PathEscapeError as exc:
            raise ValueError(f"--run: {exc}") from None
        if not path.is_dir():
            raise ValueError(f"--run: no run '{args.run}' in {runs_root}")
        if not runs.is_run(path):
            raise ValueError(f"--run: {path} is not a run folder (no config.yaml, status.json or records/ in it)")
    return AppSettings(runs_root=runs_root, data_root=data_root, initial_run=args.run), auth


def launch_app(settings: AppSettings, host: str = "127.0.0.1", port: int = 7860, auth=None,
               prevent_thread_lock: bool = False):
    """Build and serve the workbench; it serves files from the runs and data folders only."""
    import gradio as gr

    from apps.gradio_app.demo import CSS, PAGE_JS, build_demo

    settings.runs_root.mkdir(parents=True, exist_ok=True)
    demo = build_demo(settings)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, auth=auth, allowed_paths=[str(settings.runs_root),
                                                                             str(settings.data_root)],
                prevent_thread_lock=prevent_thread_lock, share=False, ssr_mode=False, mcp_server=False,
                show_error=True, quiet=True, footer_links=[], theme=theme, css=CSS, js=PAGE_JS,
                # Gradio's run history copies every call's inputs and outputs (figures included) into the
                # browser's localStorage: 50-150 ms of each slider move or checkpoint switch, for nothing here
                run_history=False)
    return demo


def run(args: argparse.Namespace) -> int:
    """`pldc app`: check the options and serve the workbench until Ctrl+C."""
    try:
        settings, auth = check_args(args)
    except ValueError as exc:
        print(f"pldc app: {exc}", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{args.port}/"
    print(f"PL-DC Workbench on {url} (runs: {settings.runs_root}, data: {settings.data_root}); Ctrl+C stops it")
    try:
        launch_app(settings, args.host, args.port, auth)
    except OSError as exc:
        print(f"pldc app: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
