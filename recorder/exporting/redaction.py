"""Redaction applied again on export: the stored rows of a raw capture, redacted on the way out.

A capture recorded with `--raw` holds secrets as they came; an export of it is redacted the way
recording would have redacted it (unless `ssetap export --raw`), by the recorder's own
redaction stage (`recorder.redact_stage.RedactionStage`), fed one row at a time and emptied
into a one-row slot. Rows arrive table by table in `recorder.store.TABLES` order, so the
secrets learned from session keys, URLs and headers are known before bodies, chunks, events
and messages are scrubbed. Chunks come out at once (exports stream): a learned secret split
across two raw chunks is missed in the chunk bytes, though not in the events and messages
parsed from them. `ssetap redact` (two passes over a whole capture) is the thorough way.
"""

from __future__ import annotations

from typing import Any

from recorder.redact import Redactor
from recorder.redact_stage import RedactionStage


class _Slot:
    """The stage's sink: keeps the last row it was given."""

    def __init__(self) -> None:
        self.row: dict[str, Any] | None = None

    def next_id(self, table: str) -> int:
        return 0

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self.row = row

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        pass


class RowRedaction:
    """Redacts capture rows (dicts as the store reads them) through one redaction stage."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._slot = _Slot()
        self._stage = RedactionStage(self._slot, redactor)

    def row(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        self._slot.row = None
        self._stage.insert(table, dict(row))
        if table == "chunks":
            self._stage.flush_stream(row["stream_id"])
        return self._slot.row if self._slot.row is not None else dict(row)

    def text(self, value: str) -> str:
        return self.redactor.scrub_text(value)

    def bytes(self, value: bytes) -> bytes:
        return self.redactor.scrub(value)
