"""`ssetap import`: mitmproxy flow files, HAR files and ssetap JSONL archives into a capture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from recorder.formats import BY_NAME, IMPORT_FORMATS
from recorder.usage import UsageError


def register(sub: Any) -> None:
    """Add `ssetap import` to the CLI's subcommands."""
    p = sub.add_parser("import", help="import a mitmproxy flow file, a HAR or an ssetap JSONL",
                       description="Turn a mitmproxy flow file (mitmdump -w), a HAR file "
                       "(mitmproxy's hardump, a browser's devtools, ssetap export) or an "
                       "ssetap JSONL archive into a capture that every ssetap command reads. "
                       "The format is recognised from the file's first bytes.")
    p.add_argument("file", help="the file to import")
    p.add_argument("--db", help="capture to write (default: FILE with the suffix .db); HAR "
                   "and flow files may add to an existing capture")
    p.add_argument("--format", choices=list(IMPORT_FORMATS),
                   help="skip recognition and read the file as this format")
    p.add_argument("--raw", action="store_true", help="store secrets unredacted (opt-in)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recorder.formats import FormatError, importer, sniff

    source = Path(args.file)
    if not source.is_file():
        raise UsageError(f"{source}: no such file" if not source.exists()
                         else f"{source} is not a file")
    db = Path(args.db) if args.db else source.with_suffix(".db")
    if db.resolve() == source.resolve():
        raise UsageError(f"{source} would be overwritten; name the capture with --db")
    if not db.parent.exists():
        raise UsageError(f"directory {db.parent} does not exist")
    with open(source, "rb") as f:
        head = f.read(64 * 1024)
    if args.format:
        fmt = BY_NAME[args.format]
    else:
        found = sniff(head)
        if found is None:
            raise UsageError(f"{source}: not a mitmproxy flow file, HAR or ssetap JSONL archive")
        fmt = found
    created = not db.exists()
    try:
        summary = importer(fmt.name).load(source, db, raw=args.raw)
    except FormatError as exc:
        _discard(db, created)
        raise UsageError(str(exc)) from None
    except Exception:
        _discard(db, created)
        raise
    print(f"ssetap: imported {summary.flows} HTTP exchanges, {summary.sessions} sessions and "
          f"{summary.messages} messages from {source} ({fmt.name}) into {db}", file=sys.stderr)
    if summary.approximate:
        print(f"ssetap: approximate in this format: {summary.approximate}", file=sys.stderr)
    return 0


def _discard(db: Path, created: bool) -> None:
    """Remove a capture this import created and could not finish (nothing half-imported)."""
    if not created:
        return
    for suffix in ("", "-wal", "-shm", ".lock", ".key"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
