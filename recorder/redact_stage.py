"""Redaction as one stage: a sink in front of the store's sink that redacts every row on its way.

Design notes:
- Ingest works on the values as they came (session grouping, correlation and the live checks need
  them) and hands rows to its sink. This stage sits between ingest and the store (the worker puts
  the stage in front of the writer, for ingest and for the observers' flags alike), so every
  value that reaches a capture passes one place. A column this module does not know is still
  scrubbed of every secret learned so far: a new place a secret can appear is covered by
  construction, not by another call in the parser.
- Within one row, values that teach secrets (URL, headers) are redacted before values that are
  scrubbed of them (bodies), so a token sent in `Authorization` is gone from the same request's
  body as well.
- Raw chunks keep their offsets: scrubbing substitutes same-length pseudonyms. A stream's last
  chunk is held back until the next one (or the stream's close) arrives, so a secret split
  across two chunks is scrubbed in the joined bytes and each part stored at its own offset.
- Redact paths (`--redact-path`) replace chosen JSON values of MCP messages wherever the message
  is stored: its row, the request body it came in, the SSE event that carried it.
- Rows are redacted in place: an observer shown a row after it was stored (the live checks,
  a live exporter) sees what the capture holds, never the secret. Ingest's own state (session
  lookups, correlation) keeps the values as they came.
- The stage is also how `ssetap redact` re-redacts an old capture: the same rows, fed again.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

import recorder.json_paths as json_paths
from recorder.model import INVALID
from recorder.redact import Redactor

_SESSION_KEY_PREFIXES = ("sid:", "legacy:")
# Columns redacted by their own rule above the generic scrub.
_DONE = {"exchanges": frozenset({"url", "request_headers", "response_headers", "request_body",
                                 "response_body"}),
         "sessions": frozenset({"key"})}
# Columns that hold structure (ids, times, kinds, JSON-RPC methods), never a secret: skipping
# them keeps the generic scrub off the worker's hottest rows' fixed columns.
_STRUCTURAL = frozenset({"id", "session_id", "exchange_id", "stream_id", "sse_event_id",
                         "call_id", "message_id", "t", "start", "end", "seq", "offset", "kind",
                         "direction", "method", "rpc_id", "batch_index", "retry", "status",
                         "severity", "source", "transport", "role", "type"})


class Sink(Protocol):
    def next_id(self, table: str) -> int: ...
    def insert(self, table: str, row: dict[str, Any]) -> None: ...
    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None: ...


class RedactionStage:
    """Redacts rows for `sink` (see the module notes); raw mode passes them through."""

    def __init__(self, sink: Sink, redactor: Redactor,
                 paths: tuple[json_paths.PathRule, ...] = ()) -> None:
        self.sink = sink
        self.redactor = redactor
        self.paths = paths
        self._content_types: dict[int, tuple[str | None, str | None]] = {}
        self._held: dict[int, dict[str, Any]] = {}
        # Which columns of a row of this shape (table and column names) the generic scrub visits.
        self._scrubbed_columns: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}

    def __getattr__(self, name: str) -> Any:
        # flush, set_meta, delete_where, backlog...: the writer's other operations pass through.
        return getattr(self.sink, name)

    def next_id(self, table: str) -> int:
        return self.sink.next_id(table)

    # Rows in ---------------------------------------------------------------------------------

    def insert(self, table: str, row: dict[str, Any]) -> None:
        if self.redactor.raw:
            self.sink.insert(table, row)
            return
        if table == "chunks":
            self._chunk(row)
            return
        self._row(table, row.get("id"), row)
        self.sink.insert(table, row)

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        if self.redactor.raw:
            self.sink.update(table, row_id, changes)
            return
        if table == "streams" and "closed_at" in changes:
            self.flush_stream(row_id)
        self._row(table, row_id, changes)
        self.sink.update(table, row_id, changes)

    def flush_stream(self, stream_id: int) -> None:
        """Store the chunk held back for a stream (at its close, or the end of a run)."""
        held = self._held.pop(stream_id, None)
        if held is not None:
            held["data"] = self.redactor.scrub(held["data"] or b"")
            self.sink.insert("chunks", held)

    def flush_quiet(self, now: float, older_than: float) -> None:
        """Store the chunks held back longer than `older_than` (the tail of a quiet stream is
        stored by time; recorder.ingest ticks this)."""
        for stream_id, held in list(self._held.items()):
            if now - held["t"] >= older_than:
                self.flush_stream(stream_id)

    def flush_all(self) -> None:
        for stream_id in list(self._held):
            self.flush_stream(stream_id)

    # Per table -------------------------------------------------------------------------------

    def _row(self, table: str, row_id: Any, out: dict[str, Any]) -> None:
        """Redact one row (or the changes of an update) in place."""
        r = self.redactor
        if table == "sessions" and isinstance(out.get("key"), str):
            out["key"] = self.session_key(out["key"])
        elif table == "exchanges":
            self._exchange(row_id, out)
        elif table == "messages" and out.get("kind") == INVALID and isinstance(out.get("json"), str):
            # Not JSON-RPC (an OAuth token response read as JSON): redacted like such a body.
            out["json"] = r.body(out["json"].encode(), "application/json").decode()
        if table in ("messages", "sse_events") and self.paths:
            self._paths(table, out)
        # Everything else, whatever table or column it is: scrubbed of every secret learned
        # so far (structural columns, like ids and times, excepted for speed).
        shape = (table, tuple(out))
        columns = self._scrubbed_columns.get(shape)
        if columns is None:
            done = _DONE.get(table, frozenset())
            columns = tuple(c for c in out if c not in _STRUCTURAL and c not in done)
            self._scrubbed_columns[shape] = columns
        for column in columns:
            value = out[column]
            if isinstance(value, str):
                out[column] = r.scrub_text(value)
            elif isinstance(value, bytes):
                out[column] = r.scrub(value)

    def session_key(self, key: str) -> str:
        """`sid:<id>` and `legacy:<id>` keep their prefix; the id becomes its pseudonym."""
        for prefix in _SESSION_KEY_PREFIXES:
            if key.startswith(prefix):
                return prefix + self.redactor.session_id(key[len(prefix):])
        return key

    def _exchange(self, row_id: Any, out: dict[str, Any]) -> None:
        r = self.redactor
        if isinstance(out.get("url"), str):
            out["url"] = r.url(out["url"])
        for column in ("request_headers", "response_headers"):
            if isinstance(out.get(column), str):
                out[column] = orjson.dumps(
                    [list(h) for h in r.headers([tuple(h) for h in orjson.loads(out[column])])]
                ).decode()
        request_type, response_type = self._content_types.get(row_id, (None, None))
        request_type = out.get("request_content_type", request_type)
        response_type = out.get("response_content_type", response_type)
        self._content_types[row_id] = (request_type, response_type)
        for column, ctype in (("request_body", request_type), ("response_body", response_type)):
            body = out.get(column)
            if isinstance(body, bytes) and body:
                out[column] = r.body(self._body_paths(body), ctype)
        if "ended_at" in out:
            self._content_types.pop(row_id, None)

    def _chunk(self, row: dict[str, Any]) -> None:
        stream_id = row["stream_id"]
        held = self._held.pop(stream_id, None)
        if held is None:
            self._held[stream_id] = dict(row)
            return
        before, data = held["data"] or b"", row["data"] or b""
        joined = self.redactor.scrub(before + data)
        held["data"] = joined[:len(before)]
        self.sink.insert("chunks", held)
        self._held[stream_id] = {**row, "data": joined[len(before):]}

    # Redact paths ----------------------------------------------------------------------------

    def _paths(self, table: str, out: dict[str, Any]) -> None:
        column = "json" if table == "messages" else "data"
        text = out.get(column)
        if isinstance(text, str) and text[:1] in ("{", "["):
            out[column] = self._json_text(text)

    def _body_paths(self, body: bytes) -> bytes:
        if not self.paths or body[:1] not in (b"{", b"["):
            return body
        return self._json_text(body.decode("utf-8", "replace")).encode()

    def _json_text(self, text: str) -> str:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        changed = False
        for message in document if isinstance(document, list) else [document]:
            if isinstance(message, dict):
                changed |= json_paths.redact(message, self.paths, self._replace)
        return orjson.dumps(document).decode() if changed else text

    def _replace(self, value: Any) -> Any:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        self.redactor.learn_credential(text, "field")
        return self.redactor.pseudonym(text, "field")
