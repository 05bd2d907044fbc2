"""Redaction applied again on export: the stored rows of a raw capture, redacted on the way out.

A capture recorded with `--raw` holds secrets as they came; an export of it is redacted the way
recording would have redacted it (unless `ssetap export --raw`). Rows arrive table by table in
`recorder.store.TABLES` order, so the secrets learned from session keys, URLs and headers are
known before bodies, chunks, events and messages are scrubbed. Chunks are scrubbed one by one
(exports stream): a learned secret split across two raw chunks is missed in the chunk bytes,
though not in the events and messages parsed from them.
"""

from __future__ import annotations

from typing import Any

import orjson

from recorder.redact import Redactor

_TEXT_COLUMNS = {"sse_events": ("data",), "messages": ("json",), "flags": ("message", "details"),
                 "calls": ("error_message",)}
_BLOB_COLUMNS = {"exchanges": ("request_body", "response_body"), "chunks": ("data",)}


class RowRedaction:
    """Redacts capture rows (dicts as the store reads them) with one `Redactor`."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def row(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        r = self.redactor
        if table == "sessions":
            prefix, sep, value = str(row["key"]).partition(":")
            if sep and prefix in ("sid", "legacy") and value:
                out["key"] = f"{prefix}:{r.session_id(value)}"
        if table == "exchanges":
            out["url"] = r.url(row["url"])
            for column in ("request_headers", "response_headers"):
                if row.get(column):
                    headers = [(k, v) for k, v in orjson.loads(row[column])]
                    out[column] = orjson.dumps([list(h) for h in r.headers(headers)]).decode()
        for column in _BLOB_COLUMNS.get(table, ()):
            if out.get(column):
                out[column] = r.scrub(out[column])
        for column in _TEXT_COLUMNS.get(table, ()):
            if out.get(column):
                out[column] = r.scrub_text(out[column])
        return out

    def text(self, value: str) -> str:
        return self.redactor.scrub_text(value)

    def bytes(self, value: bytes) -> bytes:
        return self.redactor.scrub(value)
