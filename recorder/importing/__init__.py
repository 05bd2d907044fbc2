"""Importers: one module per format (see `recorder.formats`), each `sniff(head)` and `load(...)`.

HAR files and mitmproxy flow files become the same raw facts the proxy ships to the worker
(`recorder.ingest.RawEvent`), replayed in time order through `Ingest` with a `StoreWriter`:
sessions are grouped, SSE bodies parsed and calls paired by the very code that records, and the
stored form is redacted the same way (the capture's key beside it, unless `raw`). A JSONL
archive is rows already, restored as they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recorder.ingest import Ingest, RawEvent
from recorder.redact import RAW, REDACTED, Redactor, redaction_after
from recorder.redact_stage import RedactionStage
from recorder.store import Capture, StoreWriter


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import wrote."""

    format: str
    flows: int
    sessions: int
    messages: int
    approximate: str


def existing_rows(db: Path) -> int:
    """Rows already in the capture at `db` (0 for a new or empty file)."""
    if not db.exists() or not db.stat().st_size:
        return 0
    with Capture(db) as capture:
        return sum(capture.counts().values())


def ingest_events(db: Path, events: Iterable[tuple[float, int, RawEvent]], *, raw: bool,
                  source: str) -> tuple[int, int]:
    """Feed (time, order, raw event) facts, sorted here, through the recording core into `db`.

    Returns (sessions, messages) added. Times come from the file; the ingest's clock is the
    facts' own times, so latencies and gaps are those the file recorded.
    """
    from recorder.worker import load_key

    ordered = sorted(events, key=lambda item: (item[0], item[1]))
    before = _counts(db)
    previous = _redaction(db)
    writer = StoreWriter(db)
    try:
        redactor = Redactor(None if raw else load_key(db))
        writer.set_meta("redaction", redaction_after(previous, RAW if raw else REDACTED))
        writer.set_meta("imported_from", source)
        # The recorder's own redaction stage in front of the writer, as while recording.
        ingest = Ingest(RedactionStage(writer, redactor), redactor)
        last = 0.0
        for t, _, event in ordered:
            ingest.feed(event)
            last = max(last, t)
        ingest.close(last)
    finally:
        writer.close()
    after = _counts(db)
    return after[0] - before[0], after[1] - before[1]


def _redaction(db: Path) -> str | None:
    if not db.exists() or not db.stat().st_size:
        return None
    with Capture(db) as capture:
        return capture.meta().get("redaction")


def _counts(db: Path) -> tuple[int, int]:
    if not db.exists() or not db.stat().st_size:
        return 0, 0
    with Capture(db) as capture:
        counts = capture.counts()
    return counts["sessions"], counts["messages"]
