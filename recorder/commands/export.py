"""`ssetap export`: write a capture (or one session) as JSONL, HAR or OTLP/JSON lines."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Any

from recorder.formats import BY_NAME, EXPORT_FORMATS
from recorder.usage import UsageError


def register(sub: Any) -> None:
    """Add `ssetap export` to the CLI's subcommands."""
    formats = "; ".join(f"{name}: {BY_NAME[name].summary}" for name in EXPORT_FORMATS)
    p = sub.add_parser("export", help="export a capture as JSONL, HAR or OTLP/JSON",
                       description=f"Write a capture to stdout or a file (created 0600). {formats}. "
                       "A capture recorded with --raw is redacted on export unless --raw.")
    p.add_argument("db", help="capture file")
    p.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    p.add_argument("--session", help="only this session (number or key prefix)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.add_argument("--raw", action="store_true",
                   help="export a raw capture's secrets as they are (opt-in)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


class Progress:
    """Progress on stderr for big captures: nothing for a quick export, then at most one line
    a second, and the final count once lines were shown."""

    def __init__(self, label: str, *, out: IO[str] | None = None, after: float = 2.0,
                 every: float = 1.0, clock: Any = time.monotonic) -> None:
        self.label = label
        self.out = out
        self.after, self.every, self.clock = after, every, clock
        self.started = clock()
        self.last = self.started
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        final = done >= total
        due = now - self.started >= self.after and now - self.last >= self.every
        if not due and not (final and self.shown):
            return
        self.last, self.shown = now, True
        print(f"ssetap: export {self.label}: {done}/{total}", file=self.out or sys.stderr,
              flush=True)


def open_private(path: str) -> IO[bytes]:
    """A new or truncated file, mode 0600 from the start (exports hold traffic)."""
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory")
    if os.path.islink(path):
        raise UsageError(f"{path} is a symbolic link; refusing to write through it")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def run(args: argparse.Namespace) -> int:
    from recorder.exporting import ExportOptions
    from recorder.formats import exporter
    from recorder.redact import MIXED, RAW, Redactor
    from recorder.store import Capture

    with Capture(args.db) as capture:
        session_id = None
        if args.session is not None:
            session = capture.find_session(args.session)
            if session is None:
                raise UsageError(f"no session {args.session!r} in {args.db} "
                                 "(see `ssetap sessions`)")
            session_id = int(session["id"])
        # A raw or mixed capture (raw and redacted recordings appended) is redacted on export.
        recorded_raw = capture.meta().get("redaction") in (RAW, MIXED)
        redactor = None
        if recorded_raw and not args.raw:
            from pathlib import Path

            from recorder.worker import load_key

            redactor = Redactor(load_key(Path(args.db)))
        options = ExportOptions(session_id=session_id, redactor=redactor,
                                progress=None if args.quiet else Progress(args.format))
        module = exporter(args.format)
        if args.output:
            out = open_private(args.output)
            try:
                count = module.export(capture, out, options)
            except BaseException:
                # A cut-short export must not pass for a whole one.
                out.close()
                os.unlink(args.output)
                raise
            out.close()
        else:
            out = sys.stdout.buffer
            count = module.export(capture, out, options)
            out.flush()
    if args.output and not args.quiet:
        print(f"ssetap: exported {count} {args.format} items to {args.output}", file=sys.stderr)
    return 0
