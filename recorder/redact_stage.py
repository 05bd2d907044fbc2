"""Redaction as one stage: in front of the store, it redacts every event and row on its way.

Design notes:
- Ingest works on the values as they came (session grouping and correlation need them) and
  hands its typed events (recorder.events) to `record`, which returns each one redacted: that
  is what the store writes and what the observers (the live checks, a live exporter) are shown.
  Offline tools (`ssetap redact`, exports, the live checks' flags) hand rows to `insert`. So
  every value that reaches a capture or an observer passes one place. A field or column this
  module does not know is still scrubbed of every secret learned so far: a new place a secret
  can appear is covered by construction, not by another call in the parser.
- Within one row, values that teach secrets (URL, headers) are redacted before values that are
  scrubbed of them (bodies), so a token sent in `Authorization` is gone from the same request's
  body as well.
- Raw chunks keep their offsets: scrubbing substitutes same-length pseudonyms. A stream's last
  chunk is held back until the next one (or the stream's close) arrives, so a secret split
  across two chunks is scrubbed in the joined bytes and each part stored at its own offset.
- Redact paths (`--redact-path`) replace chosen JSON values of MCP messages wherever the message
  is stored: its row, the request body it came in, the SSE event that carried it.
- Events are immutable: a redacted event is a new value (only when something changed; with
  nothing learned yet, the same event passes through). A message's decoded `payload` is
  decoded again from its redacted text when redaction changed it, so observers never see a
  secret the capture does not hold. Rows (the offline path) are redacted in place.
- The stage is also how `ssetap redact` re-redacts an old capture: the same rows, fed again.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

import recorder.json_paths as json_paths
from recorder.events import (
    ChunkStored,
    Event,
    ExchangeEnded,
    MessageSeen,
    RequestSeen,
    ResponseSeen,
    SessionOpened,
    SseSeen,
)
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
# Event fields redacted by their own rule (below) before the generic scrub, per event type.
_EVENT_DONE: dict[type, frozenset[str]] = {
    SessionOpened: frozenset({"key"}),
    RequestSeen: frozenset({"url", "request_headers", "request_body"}),
    ResponseSeen: frozenset({"response_headers"}),
    ExchangeEnded: frozenset({"response_body"}),
    MessageSeen: frozenset({"json", "payload"}),  # payload: decoded again if json changed
    ChunkStored: frozenset({"data"}),
}


class Sink(Protocol):
    """The store writer (`write(event)`), or any sink of rows (`insert`, `update`)."""

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
        self._held_events: dict[int, ChunkStored] = {}
        # Which columns of a row of this shape (table and column names) the generic scrub visits.
        self._scrubbed_columns: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        # Which fields of an event type the generic scrub visits (by index).
        self._scrubbed_fields: dict[type, tuple[int, ...]] = {}
        write = getattr(sink, "write", None)
        self._write = write if write is not None else self._write_rows
        # Ids come from the sink: bound once, not looked up through the stage per row (three
        # rows per SSE event on the worker's hottest path).
        self.next_id = sink.next_id  # type: ignore[method-assign]

    # Events in -------------------------------------------------------------------------------

    def record(self, event: Event) -> Event:
        """Redact an event, queue it for the store, and return it as stored."""
        kind = type(event)
        if kind is ChunkStored:
            self._chunk_event(event)  # type: ignore[arg-type]
            return event  # not shown to observers (they get ChunkSeen)
        if not self.redactor.raw:
            event = self._event(kind, event)
        self._write(event)
        return event

    def _write_rows(self, event: Event) -> None:
        """A sink without `write` (tests, tools) gets the event's rows."""
        # Loaded here: the stage is a pure core, and recorder.store's package loads SQLite.
        from recorder.store.event_rows import operations

        for op in operations(event):
            if op[0] == "i":
                self.sink.insert(op[1], dict(zip(op[2], op[3], strict=True)))
            else:
                self.sink.update(op[1], op[2], op[3])

    def _event(self, kind: type, event: Any) -> Any:
        r = self.redactor
        if kind is SseSeen:
            if self.paths and event.data is not None and event.data[:1] in ("{", "["):
                event = event._replace(data=self._json_text(event.data))
        elif kind is MessageSeen:
            text = event.json
            if isinstance(text, str):
                if event.kind == INVALID:
                    # Not JSON-RPC (an OAuth token response read as JSON): redacted like such
                    # a body.
                    text = r.body(text.encode(), "application/json").decode()
                if self.paths and text[:1] in ("{", "["):
                    text = self._json_text(text)
                text = r.scrub_text(text)
                if text is not event.json:
                    event = event._replace(json=text, payload=_decoded(text))
        elif kind is RequestSeen:
            self._content_types[event.id] = (event.request_content_type, None)
            body = event.request_body
            event = event._replace(
                url=r.url(event.url),
                request_headers=tuple(r.headers(list(event.request_headers))),
                request_body=r.body(self._body_paths(body), event.request_content_type)
                if body else body)
        elif kind is ResponseSeen:
            request_type = self._content_types.get(event.id, (None, None))[0]
            self._content_types[event.id] = (request_type, event.response_content_type)
            event = event._replace(
                response_headers=tuple(r.headers(list(event.response_headers))))
        elif kind is ExchangeEnded:
            ctype = self._content_types.pop(event.id, (None, None))[1]
            if event.response_body:
                event = event._replace(
                    response_body=r.body(self._body_paths(event.response_body), ctype))
        elif kind is SessionOpened:
            event = event._replace(key=self.session_key(event.key))
        # Everything else: scrubbed of every secret learned so far (structural fields, like
        # ids and times, excepted for speed).
        fields = self._scrubbed_fields.get(kind)
        if fields is None:
            done = _EVENT_DONE.get(kind, frozenset())
            fields = self._scrubbed_fields[kind] = tuple(
                i for i, name in enumerate(kind._fields)  # type: ignore[attr-defined]
                if name not in _STRUCTURAL and name not in done)
        values = None
        for i in fields:
            value = event[i]
            if value.__class__ is str:
                scrubbed: Any = r.scrub_text(value)
            elif value.__class__ is bytes:
                scrubbed = r.scrub(value)
            else:
                continue
            if scrubbed is not value:
                if values is None:
                    values = list(event)
                values[i] = scrubbed
        return event if values is None else kind._make(values)  # type: ignore[attr-defined]

    def _chunk_event(self, chunk: ChunkStored) -> None:
        if self.redactor.raw:
            self._write(chunk)
            return
        held = self._held_events.get(chunk.stream_id)
        self._held_events[chunk.stream_id] = chunk
        if held is None:
            return
        if not self.redactor.learned:
            self._write(held)  # nothing to scrub yet: no join, no copies
            return
        before = held.data
        joined = self.redactor.scrub(before + chunk.data)
        cut = len(before)
        if joined[:cut] != before:
            held = ChunkStored(held.id, held.stream_id, held.seq, held.t, held.offset,
                               joined[:cut])
        self._write(held)
        if joined[cut:] != chunk.data:
            self._held_events[chunk.stream_id] = ChunkStored(
                chunk.id, chunk.stream_id, chunk.seq, chunk.t, chunk.offset, joined[cut:])

    def __getattr__(self, name: str) -> Any:
        # flush, set_meta, delete_where, backlog...: the writer's other operations pass through.
        return getattr(self.sink, name)

    def next_id(self, table: str) -> int:
        return self.sink.next_id(table)

    def submit(self) -> None:
        """Hand what the store's writer buffered to its thread (a no-op for other sinks)."""
        submit = getattr(self.sink, "submit", None)
        if submit is not None:
            submit()

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
        chunk = self._held_events.pop(stream_id, None)
        if chunk is not None:
            self._write(chunk._replace(data=self.redactor.scrub(chunk.data)))

    def flush_quiet(self, now: float, older_than: float) -> None:
        """Store the chunks held back longer than `older_than` (the tail of a quiet stream is
        stored by time; recorder.ingest ticks this)."""
        for stream_id, chunk in list(self._held_events.items()):
            if now - chunk.t >= older_than:
                self.flush_stream(stream_id)

    def flush_all(self) -> None:
        for stream_id in list(self._held_events):
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
        """A stored chunk row (an old capture re-redacted, an export): held back and joined
        like the recorder's own chunks."""
        from recorder.store.event_rows import chunk_stored  # the package loads SQLite

        self._chunk_event(chunk_stored(row))

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


def _decoded(text: str) -> Any:
    """A message's payload decoded from its redacted text (None if that is not JSON)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
