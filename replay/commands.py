"""`ssetap replay`, `serve` and `diff`: their parsers, loading replay's code only when they run."""

from __future__ import annotations

import argparse
from typing import Any

from recorder.fault_options import add_fault_arguments


def register(sub: Any) -> None:
    """Add `ssetap replay`, `ssetap serve` and `ssetap diff` to the CLI's subcommands."""
    register_replay(sub)
    register_serve(sub)
    register_diff(sub)


def register_replay(sub: Any) -> None:
    """Add `ssetap replay` to the CLI's subcommands."""
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
    p.add_argument("--latency-threshold", metavar="LIMIT", help="a call is slow when slower "
                   "than recorded by more than this: 2x, 250ms, 2x+250ms (default), off. Slow "
                   "calls are reported; giving a threshold also fails on them")
    p.add_argument("--fail-on-slow", action="store_true", help="fail slow calls (judged on the "
                   "median of --latency-samples samples), not just report them")
    p.add_argument("--latency-samples", type=int, default=3, metavar="N", help="with "
                   "--fail-on-slow, send a call that looks slow again until N samples and judge "
                   "the median (default 3; 1 judges the single sample)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each "
                   "response (default 30)")
    p.add_argument("--transport", choices=["auto", "sse", "streamable-http"], default="auto",
                   help="the target's transport (default: detect)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_run_replay)


def register_serve(sub: Any) -> None:
    """Add `ssetap serve` to the CLI's subcommands."""
    p = sub.add_parser(
        "serve", help="serve a capture as a mock MCP server",
        description="Answer real MCP clients as the recorded server did, on both transports "
        "(Streamable HTTP and legacy HTTP+SSE), re-streaming recorded events and heartbeats "
        "with their recorded timing. Ctrl-C or SIGTERM stops it.")
    p.add_argument("db", help="capture file")
    p.add_argument("--session", help="serve only this session (default: each client session "
                   "from the recorded session whose initialize matches it best; logged)")
    p.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT (default "
                   "127.0.0.1:9000; port 0 picks a free one)")
    p.add_argument("--timing", default="recorded", help="recorded (default), fast, or xN")
    p.add_argument("--allow-remote", action="store_true", help="allow a --listen address that "
                   "is not loopback (a warning is printed)")
    p.add_argument("--allow-host", action="append", metavar="HOST[:PORT]", help="also answer "
                   "requests whose Host is this (others than loopback get 421); repeatable")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN", help="also answer "
                   "browser requests from this Origin, e.g. http://app.test:3000 (others "
                   "than loopback get 403); repeatable")
    p.add_argument("--quiet", action="store_true", help="only print errors")
    add_fault_arguments(p, "mock")
    p.set_defaults(func=_run_serve)


def register_diff(sub: Any) -> None:
    """Add `ssetap diff` to the CLI's subcommands."""
    p = sub.add_parser(
        "diff", help="what changed between two captures of a server",
        description="Compare two captures of a server (two versions, two deployments): its "
        "surface (tools, prompts, resources and templates with their schemas, server info, "
        "capabilities, protocol version), classified breaking, risky, minor or info; the "
        "results of calls that match in both; latency per method. Exit 1 on a change at the "
        "--fail-on level or worse (default breaking), 0 otherwise, 2 on bad input.")
    p.add_argument("before", help="the earlier capture")
    p.add_argument("after", help="the later capture")
    p.add_argument("--session", help="compare only this session of each capture")
    p.add_argument("--fail-on", choices=["breaking", "risky", "minor", "none"],
                   default="breaking", help="the least severe level that exits 1 "
                   "(default breaking)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    output.add_argument("--markdown", action="store_true", help="a Markdown report on stdout "
                        "(a pull-request comment)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--ignore", action="append", metavar="RULES_FILE", help="file of JSON paths "
                   "to ignore when comparing results (as for replay); repeatable")
    p.add_argument("--no-default-ignores", action="store_true", help="also compare volatile "
                   "values (_meta, progress tokens, session ids, timestamps)")
    p.set_defaults(func=_run_diff)


def _run_diff(args: argparse.Namespace) -> int:
    from replay.cli import run_diff

    return run_diff(args)


def _run_replay(args: argparse.Namespace) -> int:
    from replay.cli import run_replay

    return run_replay(args)


def _run_serve(args: argparse.Namespace) -> int:
    from replay.cli import run_serve

    return run_serve(args)
