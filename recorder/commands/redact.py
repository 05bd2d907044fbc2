"""`ssetap redact`: make a shareable copy of a capture, redacted with today's rules."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recorder.usage import UsageError


def register(sub: Any) -> None:
    """Add `ssetap redact` to the CLI's subcommands."""
    p = sub.add_parser(
        "redact", help="write a redacted copy of a capture (a --raw one too)",
        description="Rewrite every row of IN through the recorder's redaction stage into the new "
        "capture OUT, with a fresh key: credentials, tokens, OAuth codes and session ids become "
        "keyed pseudonyms, so sessions still group and calls still pair. IN is not changed.")
    p.add_argument("db", help="capture to read")
    p.add_argument("out", help="new capture file to write")
    p.add_argument("--redact-path", action="append", metavar="[METHOD[:NAME]] PATH",
                   help="also redact this JSON path of MCP messages (as for `record`); "
                   "repeatable")
    p.add_argument("--redact-rules", metavar="FILE", help="file of redact paths, one a line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recorder.commands.record import redact_paths
    from recorder.json_paths import parse_rules
    from recorder.reredact import RedactError, redact_capture

    paths = parse_rules(redact_paths(args))
    try:
        result = redact_capture(args.db, args.out, paths)
    except RedactError as exc:
        raise UsageError(str(exc)) from None
    print(f"ssetap: wrote {args.out}: {result.rows} rows redacted "
          f"(the source was {result.source_redaction})", file=sys.stderr)
    return 0
