"""`ssetap replay`, `serve` and `diff`: options in, exit code out (recorder.cli parses the args)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit

from recorder.listen import parse_listen as _parse_listen
from recorder.usage import UsageError
from replay.diff import DEFAULT_RULES, DiffOptions, IgnoreRule, RulesError, parse_rules
from replay.engine import ReplayOptions, TargetError, replay_plans
from replay.plan import Plan, PlanError, build_plan, parse_timing
from replay.recording import RecordingError, load_recordings
from replay.report import render_json, render_junit, render_text
from replay.results import CallResult
from replay.verdict import LatencyError, parse_latency_limit


class ReplayUsageError(UsageError):
    """Bad input for replay or serve: reported in one line, exit code 2."""


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise ReplayUsageError(f"--header takes \"Name: value\", not {text!r}")
    return name.strip(), value.strip()


def check_target(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReplayUsageError(f"--target needs the MCP endpoint's http(s) URL, e.g. "
                               f"http://127.0.0.1:8000/mcp, not {url!r}")
    return url


def load_rules(paths: list[str]) -> list[IgnoreRule]:
    rules: list[IgnoreRule] = []
    for name in paths:
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReplayUsageError(f"cannot read rules file {name}: {exc.strerror}") from None
        rules.extend(parse_rules(text, source=name))
    return rules


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    try:
        timing = parse_timing(args.timing)
        latency = parse_latency_limit(args.latency_threshold or "2x+250ms")
        rules = load_rules(args.ignore or [])
    except (PlanError, LatencyError, RulesError) as exc:
        raise ReplayUsageError(str(exc)) from None
    base = () if args.no_default_ignores else DEFAULT_RULES
    if args.timeout <= 0:
        raise ReplayUsageError("--timeout must be a positive number of seconds")
    if args.latency_samples < 1:
        raise ReplayUsageError("--latency-samples must be at least 1")
    # Latency gates only when asked: --fail-on-slow, or a threshold given (other than off).
    gated = latency.ratio is not None or latency.extra_ms is not None
    fail_on_slow = gated and (args.fail_on_slow or args.latency_threshold is not None)
    return ReplayOptions(
        timing=timing,
        diff=DiffOptions(base + tuple(rules), volatile_values=not args.no_default_ignores),
        latency=latency,
        headers=tuple(parse_header(h) for h in args.header or ()),
        timeout=args.timeout,
        transport=args.transport,
        only=tuple(args.only or ()),
        skip=tuple(args.skip or ()),
        fail_on_slow=fail_on_slow,
        latency_samples=args.latency_samples,
    )


class Progress:
    """Shows calls as they are judged: one line each, or one live line on a terminal."""

    def __init__(self, stream: TextIO, plans: list[Plan], note: str | None = None) -> None:
        self.stream = stream
        # Printed with the first verdict: by then the target has answered, so an unreachable
        # one gets its one-line error alone.
        self.note = note
        self.tty = stream.isatty()
        self.totals = {id(p): len(p.requests) for p in plans}
        self.done: Counter[int] = Counter()
        self.statuses: Counter[str] = Counter()
        self._open = False

    def __call__(self, plan: Plan, result: CallResult) -> None:
        if self.note is not None:
            self.stream.write(self.note + "\n")
            self.note = None
        self.done[id(plan)] += 1
        self.statuses[result.status] += 1
        count, total = self.done[id(plan)], self.totals[id(plan)]
        prefix = f"ssetap replay: session {plan.session.id} [{count}/{total}]"
        if self.tty:
            bad = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()) if s != "match")
            self.stream.write(f"\r\x1b[K{prefix} {result.label}: {result.status}"
                              + (f"  ({bad})" if bad else ""))
            self._open = True
            if count == total:
                self.finish()
        else:
            self.stream.write(f"{prefix} {result.label}: {result.status}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def run_replay(args: argparse.Namespace) -> int:
    """`ssetap replay`: 0 all matched, 1 differences, 2 bad input (raised as errors)."""
    target = check_target(args.target)
    options = options_from_args(args)
    try:
        recordings = load_recordings(args.db, args.session)
    except RecordingError as exc:
        raise ReplayUsageError(str(exc)) from None
    plans = [build_plan(r, only=options.only, skip=options.skip) for r in recordings]
    tool_calls = sum(1 for p in plans for s in p.requests if s.method == "tools/call")
    note = (f"ssetap replay: note: replaying {tool_calls} tools/call request"
            f"{'s' if tool_calls != 1 else ''} with whatever side effects they have "
            "(--skip tools/call leaves them out)") if tool_calls else None
    progress = None if args.quiet else Progress(sys.stderr, plans, note)
    try:
        result = asyncio.run(replay_plans(plans, target, options, progress))
    except TargetError as exc:
        raise ReplayUsageError(str(exc)) from None
    finally:
        if progress is not None:
            progress.finish()
    if args.junit:
        try:
            Path(args.junit).write_text(render_junit(result), encoding="utf-8")
        except OSError as exc:
            raise ReplayUsageError(f"cannot write {args.junit}: {exc.strerror}") from None
    sys.stdout.write(render_json(result) if args.json else render_text(result))
    return result.exit_code


def parse_listen(value: str) -> tuple[str, int]:
    try:
        return _parse_listen(value)
    except ValueError as exc:
        raise ReplayUsageError(str(exc)) from None


def _log_line(text: str) -> None:
    print(f"ssetap serve: {text}", file=sys.stderr, flush=True)


def run_serve(args: argparse.Namespace) -> int:
    """`ssetap serve`: run a mock of the capture until Ctrl-C or SIGTERM."""
    from recorder.fault_options import fault_config_from
    from recorder.listen import ListenError, check_exposure
    from replay.catalog import build_catalog
    from replay.host_guard import HostRules
    from replay.mock import MockError
    from replay.mock_server import MockServer

    faults = fault_config_from(args)  # validated before anything starts
    host, port = parse_listen(args.listen)
    try:
        warning = check_exposure(host, mode="serve", proxy_auth=False, allow=(),
                                 allow_remote=getattr(args, "allow_remote", False))
    except ListenError as exc:
        raise ReplayUsageError(str(exc)) from None
    if warning:
        print(f"ssetap: {warning}", file=sys.stderr, flush=True)
    rules = HostRules.for_listener(host, getattr(args, "allow_host", None) or (),
                                   getattr(args, "allow_origin", None) or ())
    try:
        timing = parse_timing(args.timing)
        catalog = build_catalog(load_recordings(args.db, args.session, with_streams=True))
        log = None if args.quiet else _log_line
        server = MockServer(catalog, host=host, port=port, timing=timing, host_rules=rules,
                            log=log, faults=faults).start()
    except (PlanError, RecordingError, MockError) as exc:
        raise ReplayUsageError(str(exc)) from None
    sessions = len(catalog.sessions)
    print(f"ssetap: serving {catalog.requests} recorded requests (initialize included) from "
          f"{sessions} session"
          f"{'s' if sessions != 1 else ''} of {args.db} (timing {timing}) on "
          f"{server.mcp_url} (Streamable HTTP) and {server.sse_url} (HTTP+SSE)",
          file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set() and server.running:
            stop.wait(0.5)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if server.mock.unmatched and not args.quiet:
        print(f"ssetap: {server.mock.unmatched} requests matched nothing in the capture",
              file=sys.stderr)
    return 0


def run_diff(args: argparse.Namespace) -> int:
    """`ssetap diff`: 0 nothing at --fail-on or worse, 1 otherwise, 2 bad input."""
    from recorder.store import StoreError
    from replay.capture_diff import diff_captures
    from replay.capture_diff_report import render_json as diff_json
    from replay.capture_diff_report import render_junit as diff_junit
    from replay.capture_diff_report import render_markdown
    from replay.capture_diff_report import render_text as diff_text

    try:
        rules = load_rules(args.ignore or [])
    except RulesError as exc:
        raise ReplayUsageError(str(exc)) from None
    base = () if args.no_default_ignores else DEFAULT_RULES
    options = DiffOptions(base + tuple(rules), volatile_values=not args.no_default_ignores)
    try:
        before = load_recordings(args.before, args.session)
        after = load_recordings(args.after, args.session)
    except (RecordingError, StoreError) as exc:
        raise ReplayUsageError(str(exc)) from None
    result = diff_captures(before, after, options=options, before_name=args.before,
                           after_name=args.after)
    if args.junit:
        try:
            Path(args.junit).write_text(diff_junit(result, args.fail_on), encoding="utf-8")
        except OSError as exc:
            raise ReplayUsageError(f"cannot write {args.junit}: {exc.strerror}") from None
    if args.json:
        sys.stdout.write(diff_json(result, args.fail_on))
    elif args.markdown:
        sys.stdout.write(render_markdown(result, args.fail_on))
    else:
        sys.stdout.write(diff_text(result))
    return result.exit_code(args.fail_on)
