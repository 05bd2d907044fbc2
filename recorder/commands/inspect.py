"""`ssetap sessions` and `ssetap show`: read a capture's sessions, calls, streams and flags."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from recorder.usage import UsageError


def register(sub: Any) -> None:
    """Add `ssetap sessions` and `ssetap show` to the CLI's subcommands."""
    p = sub.add_parser("sessions", help="list the sessions of a capture",
                       description="List the MCP sessions recorded in a capture.")
    p.add_argument("db", help="capture file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_sessions)

    p = sub.add_parser("show", help="one session: calls with latency, streams, events",
                       description="Show one session: its calls, streams and flags.")
    p.add_argument("db", help="capture file")
    p.add_argument("session", help="session number (or a prefix of its key)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_show)


def _dump(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def run_sessions(args: argparse.Namespace) -> int:
    from recorder import report
    from recorder.redact import mixed_warning
    from recorder.store import Capture

    with Capture(args.db) as capture:
        sessions = capture.sessions()
        warning = mixed_warning(capture.meta(), args.db)
    if warning:
        print(warning, file=sys.stderr)
    if args.json:
        _dump([report.session_json(s) for s in sessions])
    elif not sessions:
        print("no MCP sessions in this capture")
    else:
        print(report.sessions_table(sessions))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from recorder import report
    from recorder.store import Capture

    with Capture(args.db) as capture:
        session = capture.find_session(args.session)
        if session is None:
            raise UsageError(f"no session {args.session!r} in {args.db} (see `ssetap sessions`)")
        calls = capture.calls(session["id"])
        streams = capture.streams(session["id"])
        flags = capture.flags(session["id"])
        gaps = capture.gaps(session["id"])
    if args.json:
        _dump({
            "session": report.session_json(session),
            "calls": [report.call_json(c) for c in calls],
            "streams": [report.stream_json(s) for s in streams],
            "flags": [report.flag_json(f) for f in flags],
            "gaps": [report.gap_json(g) for g in gaps],
        })
    else:
        print(report.show_text(session, calls, streams, flags, gaps))
    return 0
