"""`ssetap check`: the parser and runner of the command; the checking itself is recorder.check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from recorder.model import SEVERITIES
from recorder.usage import UsageError

if TYPE_CHECKING:
    from recorder.health import HealthConfig


def register(sub: Any) -> None:
    """Add `ssetap check` to the CLI's subcommands."""
    p = sub.add_parser(
        "check", help="flag stream-health, protocol and security problems in a capture",
        description="Re-run ssetap's stream-health checks over a capture: missing heartbeats, "
        "idle-timeout closes, buffering, truncated streams, reconnect storms, resume gaps, "
        "request timeouts and cancels, late/orphan/duplicate responses, lost sessions, "
        "cross-session delivery, rate limits, security mistakes and MCP specification "
        "violations. Reports by session, worst first; stores its flags in the capture.")
    p.add_argument("db", help="capture file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--fail-on", choices=list(SEVERITIES), default="error",
                   help="exit 1 if any flag is at or above this severity (default error)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--sarif", metavar="FILE",
                   help="also write SARIF 2.1.0 (one result per flag) for code-scanning "
                   "dashboards")
    p.add_argument("--heartbeat-interval", metavar="S",
                   help="expected heartbeat cadence for streams that show none (default 15s)")
    p.add_argument("--request-timeout", metavar="DURATION",
                   help="deadline for a response, e.g. 30s (default: the recording's, or 60s)")
    p.add_argument("--config", metavar="FILE",
                   help="JSON file of check thresholds (fields of recorder.health.HealthConfig)")
    p.add_argument("--include-injected", action="store_true",
                   help="let flags caused by --fault injections count for --fail-on too")
    p.add_argument("--no-store", action="store_true",
                   help="do not write the flags into the capture")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recorder.check import (
        fails,
        human_report,
        json_report,
        junit_report,
        run_check,
        store_flags,
        stored_config,
    )
    from recorder.health import HealthConfigError
    from recorder.redact import mixed_warning
    from recorder.store import Capture, StoreError, recover_if_interrupted

    # A capture left by a killed recorder is marked before it is read (streams closed as
    # `recorder-crash`, flagged `recording-interrupted`); a file being recorded is left alone.
    if Path(args.db).is_file():
        recover_if_interrupted(args.db)
    try:
        with Capture(args.db) as capture:
            stored_options = stored_config(capture)
            warning = mixed_warning(capture.meta(), args.db)
        if warning:
            print(warning, file=sys.stderr)
        config = _config(args, stored_options)
    except HealthConfigError as exc:
        raise UsageError(str(exc)) from None
    result, config = run_check(args.db, config)
    failed = any(fails(f, args.fail_on, args.include_injected) for f in result.flags)
    stored = False
    if not args.no_store:
        try:
            store_flags(result)
            stored = True
        except (StoreError, OSError) as exc:
            print(f"ssetap: note: flags not stored in the capture ({exc})", file=sys.stderr)
    if args.junit:
        try:
            Path(args.junit).write_bytes(junit_report(result, args.fail_on,
                                                     include_injected=args.include_injected))
        except OSError as exc:
            raise UsageError(f"cannot write {args.junit}: {exc.strerror}") from None
    if args.sarif:
        from recorder.sarif import sarif_report

        try:
            Path(args.sarif).write_bytes(orjson.dumps(sarif_report(result),
                                                      option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            raise UsageError(f"cannot write {args.sarif}: {exc.strerror}") from None
    if args.json:
        report = json_report(result, config, args.fail_on, failed, stored)
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(human_report(result, args.fail_on, include_injected=args.include_injected))
    return 1 if failed else 0


def _config(args: argparse.Namespace, stored: dict[str, Any]) -> HealthConfig:
    from recorder.health import HealthConfig, config_from_mapping
    from recorder.live import read_config_file

    config = config_from_mapping(stored, HealthConfig())
    if args.config:
        config = config_from_mapping(read_config_file(args.config), config)
    options: dict[str, Any] = {}
    if args.request_timeout is not None:
        options["request_timeout"] = args.request_timeout
    if args.heartbeat_interval is not None:
        options["heartbeat_interval"] = args.heartbeat_interval
    return config_from_mapping(options, config)
