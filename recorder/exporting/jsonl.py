"""`ssetap export --format jsonl`: a lossless archive of a capture, one JSON object per line.

Lines, in order (the README documents them):
1. `{"type": "header", "format": "ssetap-jsonl", "version": 1, "schema_version": N,
   "session": ID or null}`
2. `{"type": "meta", "key": K, "value": V}` for each meta entry of the capture.
3. `{"type": "row", "table": T, "row": {column: value, ...}}` for every row of every table, in
   `recorder.store.TABLES` order and id order within a table. Values are as stored: times are
   floats (shortest round-trip repr), BLOBs are `{"base64": "..."}`.
4. `{"type": "end", "rows": {table: count, ...}}`: an archive without it was cut short.
"""

from __future__ import annotations

import base64
from typing import IO, Any

import orjson

from recorder.exporting import ExportOptions
from recorder.exporting.redaction import RowRedaction
from recorder.redact import REDACTED
from recorder.store import SCHEMA_VERSION, TABLES, Capture
from recorder.store_archive import meta_rows, table_count, table_rows

FORMAT = "ssetap-jsonl"
VERSION = 1


def encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def export(capture: Capture, out: IO[bytes], options: ExportOptions) -> int:
    """Write the archive; returns the number of rows written."""
    redaction = RowRedaction(options.redactor) if options.redactor else None
    out.write(_line({"type": "header", "format": FORMAT, "version": VERSION,
                     "schema_version": SCHEMA_VERSION, "session": options.session_id}))
    for key, value in meta_rows(capture):
        if redaction and key == "redaction":
            value = REDACTED  # redacted again on the way out
        out.write(_line({"type": "meta", "key": key, "value": value}))
    totals = {t: table_count(capture, t, options.session_id) for t in TABLES}
    grand_total = sum(totals.values())
    done = 0
    counts: dict[str, int] = {}
    for table in TABLES:
        n = 0
        for row in table_rows(capture, table, options.session_id):
            if redaction:
                row = redaction.row(table, row)
            out.write(_line({"type": "row", "table": table,
                             "row": {k: encode_value(v) for k, v in row.items()}}))
            n += 1
            done += 1
            if options.progress and done % 10_000 == 0:
                options.progress(done, grand_total)
        counts[table] = n
    out.write(_line({"type": "end", "rows": counts}))
    if options.progress:
        options.progress(done, grand_total)
    return done
