"""The `ssetap` command: one front door that dispatches to the subcommands.

Each subcommand's module owns its parser and runner (`register(subparsers)`); this module only
lists them, parses, dispatches and maps errors to exit codes:
0 success, 1 a finding (flags at or above a level, replay differences), 2 bad usage or
unreadable input, always with a one-line error and no traceback. Subcommand modules import
only argparse-level code when the parser is built; the work (mitmproxy, Textual, the replay
engine) loads when the command runs, so `ssetap record` stays light.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from recorder.store import StoreError
from recorder.usage import Parser, UsageError

# Kept for callers of the first round: the one usage error now lives in recorder.usage.
CliError = UsageError

# The subcommands, in the order `ssetap --help` lists them: module -> its register(subparsers).
COMMANDS: tuple[str, ...] = (
    "recorder.commands.record",
    "recorder.commands.inspect",
    "recorder.commands.check",
    "recorder.commands.redact",
    "recorder.commands.export",
    "recorder.commands.import_",
    "tui.command",
    "replay.commands",
    "recorder.commands.demo",
)


def package_version() -> str:
    """The installed distribution's version (the checkout's pyproject when not installed)."""
    try:
        return version("ssetap")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ssetap", description="Record, check, browse and replay MCP traffic "
                    "over HTTP+SSE and Streamable HTTP.")
    parser.add_argument("--version", action="version", version=f"ssetap {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args))
    except (UsageError, StoreError) as exc:
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
