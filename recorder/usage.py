"""The one usage error of the `ssetap` command line, and the argument parser that raises it.

Every subcommand raises `UsageError` for bad usage or unreadable input; the front door
(`recorder/cli.py`) turns it into one line on stderr and exit code 2. It lives in a leaf module
so the subcommands of every package (recorder, replay, tui) can raise it without importing the
front door.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class UsageError(Exception):
    """A usage or input problem, reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises `UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
