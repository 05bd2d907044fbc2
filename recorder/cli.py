"""The `ssetap` command: one front door with subcommands.

Exit codes: 0 success, 1 a finding (flags at or above a level, replay differences),
2 bad usage or unreadable input, always with a one-line error and no traceback.
Subcommands that need Textual or replay import them lazily, so `record` stays light.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import orjson

from recorder import report
from recorder.store import Capture, StoreError


class CliError(Exception):
    """A usage or input problem, reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def _dump(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


# --- record ---------------------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:
    from recorder.proxy import ProxyConfig, ProxyError, parse_listen, parse_upstream, run_proxy

    try:
        host, port = parse_listen(args.listen)
        if args.mode == "reverse":
            if not args.upstream:
                raise CliError("--upstream is required in reverse mode (or use --mode regular)")
            upstream: str | None = parse_upstream(args.upstream)
        else:
            upstream = None
        config = ProxyConfig(db=args.db, listen_host=host, listen_port=port, mode=args.mode,
                             upstream=upstream, raw=args.raw, checks=_checks_json(args),
                             quiet=args.quiet)
        _check_writable(args.db)
        code = run_proxy(config)
    except ProxyError as exc:
        raise CliError(str(exc)) from None
    if code == 0:
        _summarise(args.db)
    return code


def _checks_json(args: argparse.Namespace) -> str:
    """The live checks' options, validated here so a typo fails before the proxy starts."""
    from recorder.health import HealthConfigError
    from recorder.live import load_config

    options = _checks_options(args)
    try:
        load_config(options)
    except HealthConfigError as exc:
        raise CliError(str(exc)) from None
    return options


def _checks_options(args: argparse.Namespace) -> str:
    config_file = getattr(args, "check_config", None)
    options = {"request_timeout": getattr(args, "request_timeout", None),
               "quiet": True if getattr(args, "quiet", False) else None,
               "config_file": os.path.abspath(config_file) if config_file else None}
    return orjson.dumps({k: v for k, v in options.items() if v is not None}).decode()


def _check_writable(db: str) -> None:
    from pathlib import Path

    path = Path(db)
    if path.is_dir():
        raise CliError(f"{db} is a directory; --db needs a file path")
    if not path.parent.exists():
        raise CliError(f"directory {path.parent} does not exist")
    if path.exists() and path.stat().st_size:
        Capture(path).close()  # refuses a file that is not an ssetap capture


def _summarise(db: str) -> None:
    try:
        with Capture(db) as capture:
            counts = capture.counts()
    except StoreError:
        return
    print(f"ssetap: recorded {counts['sessions']} sessions, {counts['exchanges']} HTTP exchanges, "
          f"{counts['messages']} messages, {counts['sse_events']} SSE events and comments "
          f"into {db}", file=sys.stderr)


# --- sessions / show ------------------------------------------------------------------------


def cmd_sessions(args: argparse.Namespace) -> int:
    with Capture(args.db) as capture:
        sessions = capture.sessions()
    if args.json:
        _dump([report.session_json(s) for s in sessions])
    elif not sessions:
        print("no MCP sessions in this capture")
    else:
        print(report.sessions_table(sessions))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with Capture(args.db) as capture:
        session = capture.find_session(args.session)
        if session is None:
            raise CliError(f"no session {args.session!r} in {args.db} (see `ssetap sessions`)")
        calls = capture.calls(session["id"])
        streams = capture.streams(session["id"])
        flags = capture.flags(session["id"])
    if args.json:
        _dump({
            "session": report.session_json(session),
            "calls": [report.call_json(c) for c in calls],
            "streams": [report.stream_json(s) for s in streams],
            "flags": [report.flag_json(f) for f in flags],
        })
    else:
        print(report.show_text(session, calls, streams, flags))
    return 0


# --- demo ------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from recorder.demo import run_demo

    session = run_demo(db=args.db, transport=args.transport)
    if session is None:
        return 2
    if not args.no_browse and sys.stdout.isatty() and sys.stdin.isatty():
        from tui.app import run_browser

        run_browser(args.db, session_id=session)
    return 0


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ssetap", description="Record, check, browse and replay MCP traffic "
                     "over HTTP+SSE and Streamable HTTP.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("record", help="run a recording proxy in front of an MCP server",
                       description="Run mitmproxy with the ssetap recorder. Point the MCP client "
                       "at the proxy instead of the server. Ctrl-C or SIGTERM flushes and exits 0.")
    p.add_argument("--upstream", help="the MCP server's base URL (reverse mode), e.g. "
                   "http://127.0.0.1:8000")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on "
                   "(default 127.0.0.1:8080; port 0 picks a free one)")
    p.add_argument("--db", required=True, help="capture file (SQLite) to write")
    p.add_argument("--mode", choices=["reverse", "regular"], default="reverse",
                   help="reverse proxy in front of --upstream (default), or a regular HTTP(S) "
                   "proxy for clients configured with HTTP_PROXY")
    p.add_argument("--raw", action="store_true", help="store secrets unredacted (opt-in)")
    p.add_argument("--request-timeout", help="flag calls unanswered after this long, e.g. 30s")
    p.add_argument("--check-config", metavar="FILE", help="JSON file of thresholds for the live "
                   "checks (the same as `ssetap check --config`)")
    p.add_argument("--quiet", action="store_true", help="only print errors")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("sessions", help="list the sessions of a capture",
                       description="List the MCP sessions recorded in a capture.")
    p.add_argument("db", help="capture file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("show", help="one session: calls with latency, streams, events",
                       description="Show one session: its calls, streams and flags.")
    p.add_argument("db", help="capture file")
    p.add_argument("session", help="session number (or a prefix of its key)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("demo", help="record a scripted session against a bundled demo server",
                       description="Start a demo MCP server, the recorder in front of it and a "
                       "scripted SDK client; then summarise the capture.")
    p.add_argument("--db", default="ssetap-demo.db", help="capture file (default ssetap-demo.db)")
    p.add_argument("--transport", choices=["sse", "streamable-http", "both"], default="both")
    p.add_argument("--no-browse", action="store_true", help="do not open the TUI at the end")
    p.set_defaults(func=cmd_demo)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


# Later subcommands register here (check, browse, replay, serve) without touching the above.
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def _register_check(sub: Any) -> None:
    from recorder.check import register  # light: the checks load only when `check` runs

    register(sub)


_EXTRA_COMMANDS.append(_register_check)


# --- replay / serve (the replay package is imported only when these run) --------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from replay.cli import ReplayUsageError, run_replay

    try:
        return run_replay(args)
    except ReplayUsageError as exc:
        raise CliError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from replay.cli import ReplayUsageError, run_serve

    try:
        return run_serve(args)
    except ReplayUsageError as exc:
        raise CliError(str(exc)) from None


def _register_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay", help="replay a capture against a live server and diff the answers",
        description="Act as the recorded client against a live MCP server (either transport), "
        "with fresh ids and session, and compare every response with the recorded one. Exit 0 "
        "when everything matches, 1 on any difference, 2 on bad input. Tool calls are "
        "replayed with their side effects; --skip tools/call leaves them out.")
    p.add_argument("db", help="capture file")
    p.add_argument("--target", required=True, help="the live MCP endpoint, e.g. "
                   "http://127.0.0.1:8000/mcp (Streamable HTTP) or .../sse (legacy)")
    p.add_argument("--session", help="replay only this session (number or key prefix)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--timing", default="fast", help="fast (default: as fast as causality "
                   "allows), recorded, or xN (N times faster than recorded)")
    p.add_argument("--only", action="append", metavar="PAT", help="replay only requests whose "
                   "method (or method:name) matches this glob; repeatable")
    p.add_argument("--skip", action="append", metavar="PAT", help="leave out requests whose "
                   "method (or method:name) matches this glob; repeatable")
    p.add_argument("--ignore", action="append", metavar="RULES_FILE", help="file of JSON paths "
                   "to ignore when comparing (see README); repeatable")
    p.add_argument("--no-default-ignores", action="store_true", help="also compare volatile "
                   "values (_meta, progress tokens, session ids, timestamps)")
    p.add_argument("--header", action="append", metavar='"K: V"', help="send this header on "
                   "every request (fresh credentials: captured ones are never replayed)")
    p.add_argument("--latency-threshold", default="2x+250ms", metavar="LIMIT", help="flag calls "
                   "slower than recorded by more than this: 2x, 250ms, 2x+250ms (default), off")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each "
                   "response (default 30)")
    p.add_argument("--transport", choices=["auto", "sse", "streamable-http"], default="auto",
                   help="the target's transport (default: detect)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_replay)


def _register_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="serve a capture as a mock MCP server",
        description="Answer real MCP clients as the recorded server did, on both transports "
        "(Streamable HTTP and legacy HTTP+SSE), re-streaming recorded events and heartbeats "
        "with their recorded timing. Ctrl-C or SIGTERM stops it.")
    p.add_argument("db", help="capture file")
    p.add_argument("--session", help="serve only this session (default: all, pooled)")
    p.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT (default "
                   "127.0.0.1:9000; port 0 picks a free one)")
    p.add_argument("--timing", default="recorded", help="recorded (default), fast, or xN")
    p.add_argument("--quiet", action="store_true", help="only print errors")
    p.set_defaults(func=cmd_serve)


_EXTRA_COMMANDS += [_register_replay, _register_serve]


# --- browse (Textual is imported only when it runs) -----------------------------------------


def cmd_browse(args: argparse.Namespace) -> int:
    session_id = None
    # Open the capture first: a bad file is one line and exit 2, before any screen is drawn.
    with Capture(args.db) as capture:
        if args.session is not None:
            session = capture.find_session(args.session)
            if session is None:
                raise CliError(f"no session {args.session!r} in {args.db} (see `ssetap sessions`)")
            session_id = int(session["id"])
    if args.gap < 0:
        raise CliError("--gap must be 0 (no gap rows) or a number of seconds")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("browse needs a terminal (try `ssetap sessions` or `ssetap show`)")
    from tui.app import run_browser

    return run_browser(args.db, session_id, gap_threshold=args.gap or None)


def _register_browse(sub: Any) -> None:
    p = sub.add_parser("browse", help="browse a capture in the terminal (live while recording)",
                       description="Open the terminal browser on a capture: sessions, a "
                       "timeline of each session with request/response links, JSON, headers, "
                       "raw SSE bytes, flags and charts. Press ? inside for every key.")
    p.add_argument("db", help="capture file")
    p.add_argument("session", nargs="?", help="open this session directly (number or key prefix)")
    p.add_argument("--gap", type=float, default=2.0, metavar="SECONDS",
                   help="mark silences at least this long in the timeline (default 2; 0: never)")
    p.set_defaults(func=cmd_browse)


_EXTRA_COMMANDS.append(_register_browse)

def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args))
    except CliError as exc:
        print(f"ssetap: error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"ssetap: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("SSETAP_DEBUG"):
            raise
        print(f"ssetap: internal error: {type(exc).__name__}: {exc} "
              "(run with SSETAP_DEBUG=1 for details)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
