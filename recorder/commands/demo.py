"""`ssetap demo`: record a scripted SDK session against the bundled demo server."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    """Add `ssetap demo` to the CLI's subcommands."""
    p = sub.add_parser("demo", help="record a scripted session against a bundled demo server",
                       description="Start a demo MCP server, the recorder in front of it and a "
                       "scripted SDK client; then summarise the capture.")
    p.add_argument("--db", default="ssetap-demo.db", help="capture file (default ssetap-demo.db)")
    p.add_argument("--transport", choices=["sse", "streamable-http", "both"], default="both")
    p.add_argument("--no-browse", action="store_true", help="do not open the TUI at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recorder.demo import run_demo

    session = run_demo(db=args.db, transport=args.transport)
    if session is None:
        return 2
    if not args.no_browse and sys.stdout.isatty() and sys.stdin.isatty():
        from tui.app import run_browser  # lazily: only when the demo ends in a terminal

        run_browser(args.db, session_id=session)
    return 0
