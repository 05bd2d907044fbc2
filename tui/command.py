"""`ssetap browse`: its parser and runner; Textual loads only when the browser opens."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recorder.store import Capture
from recorder.usage import UsageError


def register(sub: Any) -> None:
    """Add `ssetap browse` to the CLI's subcommands."""
    p = sub.add_parser("browse", help="browse a capture in the terminal (live while recording)",
                       description="Open the terminal browser on a capture: sessions, a "
                       "timeline of each session with request/response links, JSON, headers, "
                       "raw SSE bytes, flags and charts. Press ? inside for every key.")
    p.add_argument("db", help="capture file")
    p.add_argument("session", nargs="?", help="open this session directly (number or key prefix)")
    p.add_argument("--gap", type=float, default=2.0, metavar="SECONDS",
                   help="mark silences at least this long in the timeline (default 2; 0: never)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    session_id = None
    # Open the capture first: a bad file is one line and exit 2, before any screen is drawn.
    with Capture(args.db) as capture:
        if args.session is not None:
            session = capture.find_session(args.session)
            if session is None:
                raise UsageError(f"no session {args.session!r} in {args.db} (see `ssetap sessions`)")
            session_id = int(session["id"])
    if args.gap < 0:
        raise UsageError("--gap must be 0 (no gap rows) or a number of seconds")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("browse needs a terminal (try `ssetap sessions` or `ssetap show`)")
    from tui.app import run_browser

    return run_browser(args.db, session_id, gap_threshold=args.gap or None)
