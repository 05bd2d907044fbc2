"""`ssetap record`: run the recording proxy in front of an MCP server (or as a regular proxy)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from recorder.fault_options import add_fault_arguments, fault_config_from
from recorder.usage import UsageError

if TYPE_CHECKING:
    from recorder.faults import FaultConfig

# The exit status of a recording that is missing part of the traffic (recorder.proxy's too).
EXIT_INCOMPLETE = 3


def register(sub: Any) -> None:
    """Add `ssetap record` to the CLI's subcommands."""
    p = sub.add_parser("record", help="run a recording proxy in front of an MCP server",
                       description="Run mitmproxy with the ssetap recorder. Point the MCP client "
                       "at the proxy instead of the server. Ctrl-C or SIGTERM flushes and exits "
                       "within --stop-timeout: 0 for a complete capture, 3 when part of the "
                       "traffic is missing from it (shed under overload, a dead recording "
                       "process, a full disk: each a gap that `ssetap check` shows).")
    p.add_argument("--upstream", help="the MCP server's base URL (reverse mode), e.g. "
                   "http://127.0.0.1:8000")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on "
                   "(default 127.0.0.1:8080; port 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true", help="allow a --listen address "
                   "that is not loopback (a warning is printed; regular mode also needs "
                   "--proxy-auth and --allow-upstream)")
    p.add_argument("--proxy-auth", metavar="USER:PASS|@HTPASSWD", help="regular mode: clients "
                   "must authenticate (mitmproxy's proxyauth; @FILE reads an htpasswd file and "
                   "keeps the password out of the process list)")
    p.add_argument("--allow-upstream", action="append", metavar="HOST:PORT", help="regular "
                   "mode: forward (and CONNECT) only to these; repeatable")
    p.add_argument("--db", required=True, help="capture file (SQLite) to write")
    p.add_argument("--mode", choices=["reverse", "regular"], default="reverse",
                   help="reverse proxy in front of --upstream (default), or a regular HTTP(S) "
                   "proxy for clients configured with HTTP_PROXY")
    p.add_argument("--raw", action="store_true", help="store secrets unredacted (opt-in)")
    p.add_argument("--redact-path", action="append", metavar="[METHOD[:NAME]] PATH",
                   help="also redact this JSON path of MCP messages, e.g. "
                   "'$.params.arguments.password' or 'tools/call:login $.params.arguments.*'; "
                   "repeatable")
    p.add_argument("--redact-rules", metavar="FILE", help="file of redact paths, one "
                   "`[METHOD[:NAME]] PATH` a line (the syntax of replay's ignore rules)")
    p.add_argument("--request-timeout", help="flag calls unanswered after this long, e.g. 30s")
    p.add_argument("--check-config", metavar="FILE", help="JSON file of thresholds for the live "
                   "checks (the same as `ssetap check --config`)")
    p.add_argument("--quiet", action="store_true", help="only print errors")
    p.add_argument("--max-backlog", default="256M", metavar="SIZE",
                   help="unrecorded data the proxy may hold before it sheds stream data into "
                   "recorded gaps instead of queueing (default 256M; K, M, G suffixes)")
    p.add_argument("--max-lag", default="2s", metavar="DURATION",
                   help="how far the recording may fall behind the wire before it sheds "
                   "(default 2s)")
    p.add_argument("--stop-timeout", default="10s", metavar="DURATION",
                   help="longest time stopping may take; what is not recorded by then is a "
                   "gap (default 10s)")
    add_fault_arguments(p, "proxy")
    p.add_argument("--otlp-endpoint", metavar="URL", help="also push spans live over OTLP/HTTP "
                   "(protobuf) to this OpenTelemetry backend, e.g. http://127.0.0.1:4318 "
                   "(POSTs to URL/v1/traces); batched, never blocks recording")
    p.add_argument("--otlp-header", metavar="NAME=VALUE", action="append", default=[],
                   help="a header for the OTLP backend (e.g. its auth); repeatable")
    p.set_defaults(func=run)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0}


def parse_size(option: str, value: str) -> int:
    """`256M` -> bytes; raises UsageError for anything else or a size that is not positive."""
    number, unit = _split_unit(value)
    if number is None or unit.lower() not in _SIZE_UNITS or number <= 0:
        raise UsageError(f"{option} needs a positive size like 256M or 1G, got {value!r}")
    return int(number * _SIZE_UNITS[unit.lower()])


def parse_duration(option: str, value: str) -> float:
    """`2s`, `500ms`, `1m` -> seconds; raises UsageError otherwise."""
    number, unit = _split_unit(value)
    if number is None or unit.lower() not in _TIME_UNITS or number <= 0:
        raise UsageError(f"{option} needs a positive duration like 2s or 500ms, got {value!r}")
    return number * _TIME_UNITS[unit.lower()]


def _split_unit(value: str) -> tuple[float | None, str]:
    text = value.strip()
    digits = len(text) - len(text.lstrip("0123456789."))
    try:
        return float(text[:digits]), text[digits:].strip()
    except ValueError:
        return None, ""


def run(args: argparse.Namespace) -> int:
    from recorder.proxy import ProxyConfig, ProxyError, parse_listen, parse_upstream, run_proxy

    faults = fault_config_from(args)  # validated before anything starts
    try:
        host, port = parse_listen(args.listen)
        from recorder.compat import refuse_exposed_listen

        refusal = refuse_exposed_listen(host)
        if refusal:
            raise UsageError(refusal)
        if args.mode == "reverse":
            if not args.upstream:
                raise UsageError("--upstream is required in reverse mode (or use --mode regular)")
            upstream: str | None = parse_upstream(args.upstream)
        else:
            upstream = None
        allow, proxy_auth = _exposure(args, host)
        config = ProxyConfig(db=args.db, listen_host=host, listen_port=port, mode=args.mode,
                             upstream=upstream, raw=args.raw, checks=_checks_json(args, faults),
                             quiet=args.quiet, redact_paths=redact_paths(args),
                             proxy_auth=proxy_auth, allow_upstream=allow,
                             faults=faults.to_json() if faults else "",
                             max_backlog=parse_size("--max-backlog", args.max_backlog),
                             max_lag=parse_duration("--max-lag", args.max_lag),
                             stop_timeout=parse_duration("--stop-timeout", args.stop_timeout),
                             otlp=_otlp_json(args))
        _check_writable(args.db)
        started = time.time()
        code = run_proxy(config)
    except ProxyError as exc:
        raise UsageError(str(exc)) from None
    if code in (0, EXIT_INCOMPLETE):
        code = _summarise(args.db, started, code)
    return code


def _exposure(args: argparse.Namespace, host: str) -> tuple[tuple[tuple[str, int], ...],
                                                             str | None]:
    """The listen rules (recorder.listen.check_exposure); prints the warning they ask for."""
    from recorder.listen import ListenError, check_exposure, parse_hostport

    if args.mode != "regular" and (args.proxy_auth or args.allow_upstream):
        raise UsageError("--proxy-auth and --allow-upstream are for --mode regular (a reverse "
                         "proxy only forwards to --upstream)")
    if args.proxy_auth is not None and (args.proxy_auth.strip().lower() == "any"
                                        or ":" not in args.proxy_auth
                                        and not args.proxy_auth.startswith("@")):
        raise UsageError("--proxy-auth needs USER:PASS or @HTPASSWD_FILE")
    try:
        allow = tuple(parse_hostport(v) for v in args.allow_upstream or ())
        warning = check_exposure(host, mode=args.mode, allow_remote=args.allow_remote,
                                 proxy_auth=bool(args.proxy_auth), allow=allow)
    except ListenError as exc:
        raise UsageError(str(exc)) from None
    if warning:
        print(f"ssetap: {warning}", file=sys.stderr, flush=True)
    return allow, args.proxy_auth


def redact_paths(args: argparse.Namespace) -> str:
    """The redact path rules of `--redact-path` and `--redact-rules`, checked, one a line."""
    from recorder.json_paths import PathError, parse_rules

    lines = list(getattr(args, "redact_path", None) or [])
    rules_file = getattr(args, "redact_rules", None)
    if rules_file:
        try:
            with open(rules_file, encoding="utf-8") as f:
                lines.append(f.read())
        except OSError as exc:
            raise UsageError(f"cannot read {rules_file}: {exc.strerror}") from None
    text = "\n".join(lines)
    try:
        parse_rules(text, rules_file or "--redact-path")
    except PathError as exc:
        raise UsageError(str(exc)) from None
    if text.strip() and getattr(args, "raw", False):
        raise UsageError("--raw stores everything as it came; it cannot be combined with "
                         "--redact-path or --redact-rules")
    return text


def _checks_json(args: argparse.Namespace, faults: FaultConfig | None = None) -> str:
    """The live checks' options, validated here so a typo fails before the proxy starts."""
    from recorder.faults import idle_cut_seconds
    from recorder.health import HealthConfigError
    from recorder.live import load_config

    options = _checks_options(args)
    try:
        config = load_config(options)
    except HealthConfigError as exc:
        raise UsageError(str(exc)) from None
    cuts = set(idle_cut_seconds(faults.specs)) if faults else set()
    if cuts - set(config.idle_timeouts):
        # `--fault idle-cut=D` closes streams at D: the live idle-timeout-close check must
        # know that deadline (added to the configured ones).
        data = orjson.loads(options)
        data["idle_timeouts"] = sorted(set(config.idle_timeouts) | cuts)
        options = orjson.dumps(data).decode()
    return options


def _checks_options(args: argparse.Namespace) -> str:
    config_file = getattr(args, "check_config", None)
    options = {"request_timeout": getattr(args, "request_timeout", None),
               "quiet": True if getattr(args, "quiet", False) else None,
               "config_file": os.path.abspath(config_file) if config_file else None}
    return orjson.dumps({k: v for k, v in options.items() if v is not None}).decode()


def _otlp_json(args: argparse.Namespace) -> str:
    """The live push's options, checked before the proxy starts ("" when not asked for)."""
    from urllib.parse import urlsplit

    from recorder.otlp_push import PushOptions, parse_header

    endpoint = getattr(args, "otlp_endpoint", None)
    headers = getattr(args, "otlp_header", None) or []
    if not endpoint:
        if headers:
            raise UsageError("--otlp-header needs --otlp-endpoint")
        return ""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--otlp-endpoint needs an http(s) URL like http://127.0.0.1:4318, "
                         f"got {endpoint!r}")
    try:
        pairs = tuple(parse_header(h) for h in headers)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return PushOptions(endpoint=endpoint, headers=pairs).to_json()


def _check_writable(db: str) -> None:
    from pathlib import Path

    from recorder.store import Capture

    path = Path(db)
    if path.is_dir():
        raise UsageError(f"{db} is a directory; --db needs a file path")
    if not path.parent.exists():
        raise UsageError(f"directory {path.parent} does not exist")
    if path.exists() and path.stat().st_size:
        Capture(path).close()  # refuses a file that is not an ssetap capture


def _summarise(db: str, started: float, code: int) -> int:
    """Print what was recorded; returns the exit status (3 when anything is missing)."""
    from recorder.gaps import incomplete_line
    from recorder.store import Capture, StoreError, recover_if_interrupted

    # A worker stopped for running over the stop timeout left the capture open: mark it now.
    interrupted = recover_if_interrupted(db)
    try:
        with Capture(db) as capture:
            counts = capture.counts()
            recent = [g for g in capture.gaps() if g["ended_at"] >= started - 1]
            pushed = capture.meta().get("otlp_push")
    except StoreError as exc:
        print(f"ssetap: error: the capture cannot be read back ({exc})", file=sys.stderr)
        return EXIT_INCOMPLETE

    def n(count: int, one: str, many: str) -> str:
        return f"{count} {one if count == 1 else many}"

    print(f"ssetap: recorded {n(counts['sessions'], 'session', 'sessions')}, "
          f"{n(counts['exchanges'], 'HTTP exchange', 'HTTP exchanges')}, "
          f"{n(counts['messages'], 'message', 'messages')}, "
          f"{n(counts['sse_events'], 'SSE event or comment', 'SSE events and comments')} "
          f"into {db}", file=sys.stderr)
    if pushed:
        from recorder.otlp_push import counts_line

        line = counts_line(pushed)
        if line:
            print(f"ssetap: {line}", file=sys.stderr)
    if recent or interrupted or code == EXIT_INCOMPLETE:
        events = sum(g["events"] if g["events"] is not None else g["chunks"] for g in recent)
        if recent:
            print(f"ssetap: {incomplete_line(events, len(recent))}", file=sys.stderr)
        else:
            print("ssetap: recording incomplete: the recording process stopped early (see the "
                  "errors above); see ssetap check", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
