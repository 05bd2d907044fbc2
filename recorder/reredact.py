"""`ssetap redact`: rewrite a capture (a `--raw` one too) through today's redaction stage.

Two passes over the rows: the first only learns (every credential header, URL, OAuth body and
session id of the whole capture), the second writes, so a secret seen late in the capture is
scrubbed from rows stored before it as well. The copy gets its own key file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.json_paths import PathRule
from recorder.redact import REDACTED, Redactor
from recorder.redact_stage import RedactionStage
from recorder.store import TABLES, Capture, StoreWriter
from recorder.worker import load_key

# Meta keys the new capture's writer owns.
_OWN_META = frozenset({"format", "created_at", "schema_version", "redaction"})


class RedactError(Exception):
    """The capture cannot be rewritten (same file, output exists, not a capture)."""


@dataclass(frozen=True, slots=True)
class RedactResult:
    rows: int
    tables: dict[str, int]
    source_redaction: str


class _Discard:
    def next_id(self, table: str) -> int:
        return 0

    def insert(self, table: str, row: dict[str, Any]) -> None:
        pass

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        pass


def redact_capture(source: str | os.PathLike[str], target: str | os.PathLike[str],
                   paths: tuple[PathRule, ...] = ()) -> RedactResult:
    src, dst = Path(source), Path(target)
    if not src.exists():
        raise RedactError(f"{src} does not exist")
    if dst.exists() or dst.is_symlink():
        if dst.resolve() == src.resolve():
            raise RedactError("the output must be a new file, not the capture itself")
        if dst.is_symlink() or dst.stat().st_size:
            raise RedactError(f"{dst} exists; ssetap redact writes a new capture")
    with Capture(src) as capture:
        meta = capture.meta()
        redactor = Redactor(load_key(dst))
        learner = RedactionStage(_Discard(), redactor, paths)
        for table in TABLES:
            for row in capture.table_rows(table):
                learner.insert(table, row)
        learner.flush_all()
        writer = StoreWriter(dst)
        counts: dict[str, int] = {}
        try:
            stage = RedactionStage(writer, redactor, paths)
            for key, value in meta.items():
                if key not in _OWN_META:
                    writer.set_meta(key, value)
            writer.set_meta("redaction", REDACTED)
            for table in TABLES:
                count = 0
                for row in capture.table_rows(table):
                    stage.insert(table, row)
                    count += 1
                counts[table] = count
            stage.flush_all()
        finally:
            writer.close()
    return RedactResult(sum(counts.values()), counts, meta.get("redaction", REDACTED))

