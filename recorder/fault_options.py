"""The `--fault*` command-line options, shared by `ssetap record` and `ssetap serve`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from recorder.usage import UsageError

if TYPE_CHECKING:
    from recorder.faults import FaultConfig


def add_fault_arguments(parser: Any, where: str) -> None:
    """Add --fault, --fault-after, --fault-every and --fault-sessions to a subcommand."""
    parser.add_argument("--fault", action="append", metavar="SPEC", default=None,
                        help=f"make the {where} misbehave on purpose (repeatable): "
                        "drop-heartbeats, buffer=DURATION, idle-cut=DURATION, cut-stream=N, "
                        "strip-event-ids, session-lost=DURATION, delay=METHOD[:NAME]:DURATION, "
                        "hang=METHOD[:NAME], error=METHOD[:NAME]:CODE (see README)")
    parser.add_argument("--fault-after", metavar="DURATION", help="faults start this long "
                        "after each session starts (default: at once)")
    parser.add_argument("--fault-every", metavar="DURATION", help="faults are on for DURATION, "
                        "off for DURATION, and so on (default: on for good)")
    parser.add_argument("--fault-sessions", metavar="N", help="only the first N sessions get "
                        "faults")


def fault_config_from(args: argparse.Namespace) -> FaultConfig | None:
    """The validated fault config of a command line, None without --fault; bad: UsageError."""
    from recorder.faults import FaultSpecError, fault_config

    specs = getattr(args, "fault", None) or []
    extra = [f"--{n}" for n in ("fault_after", "fault_every", "fault_sessions")
             if getattr(args, n, None) is not None]
    if not specs:
        if extra:
            raise UsageError(f"{extra[0].replace('_', '-')} needs --fault")
        return None
    try:
        return fault_config(specs, after=args.fault_after, every=args.fault_every,
                            sessions=args.fault_sessions)
    except FaultSpecError as exc:
        raise UsageError(str(exc)) from None
