"""How the recorder's typed events (recorder.events) become capture rows, and rows events again.

- `operations(event)`: what the writer does for an event, as insert and update operations.
  Inserts of the hot events (chunks, SSE items, messages) are a slice of the event: its first
  fields are the columns named in `INSERTS`, which is checked when this module loads.
- `events_of(kind, row)`: the events a stored row stands for (`ssetap check` feeds a stored
  capture to the same checks as a live recording; the redaction stage redacts rows of old
  captures by the same rules as events).
Pure: values in, values out; the writer thread applies the operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import orjson

from recorder.events import (
    CallAnswered,
    CallCancelled,
    CallOpened,
    CallProgressed,
    ChunkSeen,
    ChunkStored,
    Event,
    ExchangeEnded,
    Headers,
    InjectionMade,
    MessageSeen,
    RequestSeen,
    ResponseSeen,
    SessionJoined,
    SessionLearned,
    SessionOpened,
    SessionSeen,
    SseSeen,
    StreamClosed,
    StreamCounters,
    StreamOpened,
)
from recorder.jsonrpc import stored_payload

# Insert: ("i", table, columns, values). Update: ("u", table, row id, {column: value}).
Operation = tuple[Any, ...]

# Events stored by an insert whose values are the event's leading fields, as they are.
INSERTS: Final[dict[type, tuple[str, tuple[str, ...]]]] = {
    SessionOpened: ("sessions", ("id", "key", "transport", "server", "endpoint", "started_at",
                                 "ended_at", "client_addr", "user_agent")),
    StreamOpened: ("streams", ("id", "exchange_id", "session_id", "method", "role",
                               "last_event_id_sent", "opened_at", "content_encoding")),
    ChunkStored: ("chunks", ("id", "stream_id", "seq", "t", "offset", "data")),
    SseSeen: ("sse_events", ("id", "stream_id", "session_id", "t", "kind", "type", "data",
                             "event_id", "last_event_id", "retry", "start", "end")),
    MessageSeen: ("messages", ("id", "session_id", "exchange_id", "stream_id", "sse_event_id",
                               "t", "direction", "kind", "rpc_id", "method", "batch_index",
                               "json", "problem", "call_id")),
    CallOpened: ("calls", ("id", "session_id", "direction", "rpc_id", "method", "name",
                           "request_message_id", "sent_at", "outcome", "progress_token")),
    InjectionMade: ("injections", ("id", "session_id", "exchange_id", "stream_id", "t", "spec",
                                   "kind", "action", "detail")),
}
for _type, (_table, _columns) in INSERTS.items():
    assert _type._fields[:len(_columns)] == _columns, (_type, _columns)  # type: ignore[attr-defined]
# Tables whose rows are traffic data: under a write failure they are dropped and counted as a
# gap (recorder.store.writer), the rest of a failed batch is retried.
DATA_EVENTS: Final = frozenset({ChunkStored, SseSeen, MessageSeen})

_EXCHANGE_INSERT: Final = ("id", "flow_id", "method", "url", "path", "request_headers",
                           "request_body", "request_content_type", "started_at", "client_addr",
                           "mcp", "request_size", "session_id")
_COUNTERS: Final = ("bytes", "chunks", "events", "comments", "max_gap_ms", "truncated",
                    "retry_ms", "first_byte_at")
_LEARNED: Final = SessionLearned._fields[2:]


def headers_json(headers: Headers) -> str:
    return orjson.dumps([list(h) for h in headers]).decode()


def parse_headers(text: Any) -> Headers:
    """Stored headers (a JSON list of [name, value]) as the events carry them."""
    if not text:
        return ()
    try:
        pairs = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ()
    return tuple((str(p[0]), str(p[1])) for p in pairs if isinstance(p, list) and len(p) == 2)


def _counters(c: StreamCounters) -> dict[str, Any]:
    return {"bytes": c.bytes, "chunks": c.chunks, "events": c.events, "comments": c.comments,
            "max_gap_ms": round(c.max_gap_ms, 3), "truncated": int(c.truncated),
            "retry_ms": c.retry_ms, "first_byte_at": c.first_byte_at}


def operations(event: Event) -> list[Operation]:
    """The writer's operations for one event (none for events only the checks read)."""
    kind = type(event)
    e: Any = event  # one of the event types, told apart by `kind`
    insert = INSERTS.get(kind)
    if insert is not None:
        table, columns = insert
        return [("i", table, columns, tuple(e[:len(columns)]))]
    if kind is RequestSeen:
        return [("i", "exchanges", _EXCHANGE_INSERT, (
            e.id, e.flow_id, e.method, e.url, e.path, headers_json(e.request_headers),
            e.request_body, e.request_content_type, e.started_at, e.client_addr, int(e.mcp),
            e.request_size, e.session_id))]
    if kind is ResponseSeen:
        return [("u", "exchanges", e.id, {
            "status": e.status, "reason": e.reason,
            "response_headers": headers_json(e.response_headers),
            "response_content_type": e.response_content_type, "response_at": e.t,
            "streamed": int(e.streamed), "mcp": int(e.mcp)})]
    if kind is ExchangeEnded:
        changes: dict[str, Any] = {"ended_at": e.t, "error": e.error, "mcp": int(e.mcp)}
        if e.response_body is not None:
            changes["response_body"] = e.response_body
        if e.response_size:
            changes["response_size"] = e.response_size
        return [("u", "exchanges", e.id, changes)]
    if kind is SessionJoined:
        ops: list[Operation] = [("u", "exchanges", e.exchange_id, {"session_id": e.session_id})]
        if e.stream_id is not None:
            stream: dict[str, Any] = {"session_id": e.session_id}
            if e.stream_role is not None:
                stream["role"] = e.stream_role
            ops.append(("u", "streams", e.stream_id, stream))
        return ops
    if kind is SessionSeen:
        return [("u", "sessions", e.session_id, {"ended_at": e.t})]
    if kind is SessionLearned:
        learned = {k: v for k, v in zip(_LEARNED, e[2:], strict=True) if v is not None}
        return [("u", "sessions", e.session_id, learned)] if learned else []
    if kind is StreamCounters:
        return [("u", "streams", e.stream_id, _counters(e))]
    if kind is StreamClosed:
        return [("u", "streams", e.stream_id, {**_counters(e.counters), "closed_at": e.t,
                                                "close_reason": e.close_reason})]
    if kind is CallAnswered:
        answered: dict[str, Any] = {"response_message_id": e.response_message_id,
                                    "answered_at": e.t, "latency_ms": e.latency_ms}
        if e.outcome is not None:
            answered["outcome"] = e.outcome
        if e.error_code is not None or e.error_message is not None:
            answered.update(error_code=e.error_code, error_message=e.error_message)
        if e.late:
            answered["late"] = 1
        return [("u", "calls", e.call_id, answered)]
    if kind is CallProgressed:
        return [("u", "calls", e.call_id, {"progress_count": e.progress_count,
                                           "last_progress_at": e.t})]
    if kind is CallCancelled:
        return [("u", "calls", e.call_id, {"outcome": "cancelled", "cancelled_at": e.t,
                                           "cancel_message_id": e.cancel_message_id,
                                           "cancel_reason": e.cancel_reason})]
    return []  # ChunkSeen, CallOrphan, Tick: for the checks only


# --- Rows back into events ----------------------------------------------------------------------


def session_opened(row: dict[str, Any]) -> SessionOpened:
    return SessionOpened(row["id"], row["key"], row["transport"], row.get("server") or "",
                         row.get("endpoint"), row["started_at"],
                         row.get("ended_at") or row["started_at"], row.get("client_addr"),
                         row.get("user_agent"))


def session_learned(row: dict[str, Any], t: float) -> SessionLearned | None:
    facts = tuple(row.get(k) for k in _LEARNED)
    if all(v is None for v in facts):
        return None
    return SessionLearned(t, row["id"], *facts)


def request_seen(row: dict[str, Any]) -> RequestSeen:
    body = row.get("request_body")
    return RequestSeen(row["id"], row.get("flow_id") or "", row["method"], row["url"],
                       row["path"], parse_headers(row.get("request_headers")), body,
                       row.get("request_content_type"), row["started_at"],
                       row.get("client_addr") or "", bool(row.get("mcp")),
                       row.get("request_size") or (len(body) if body else 0),
                       row.get("session_id"))


def response_seen(row: dict[str, Any]) -> ResponseSeen:
    return ResponseSeen(row["id"], row["response_at"], row.get("status") or 0,
                        row.get("reason") or "", parse_headers(row.get("response_headers")),
                        row.get("response_content_type"), bool(row.get("streamed")),
                        bool(row.get("mcp")), row.get("session_id"))


def exchange_ended(row: dict[str, Any]) -> ExchangeEnded:
    return ExchangeEnded(row["id"], row["ended_at"], row.get("error"), bool(row.get("mcp")),
                         row.get("session_id"), row.get("response_body"),
                         row.get("response_size") or 0)


def stream_opened(row: dict[str, Any]) -> StreamOpened:
    return StreamOpened(row["id"], row["exchange_id"], row.get("session_id"),
                        row.get("method") or "GET", row.get("role") or "get",
                        row.get("last_event_id_sent"), row["opened_at"],
                        row.get("content_encoding"))


def stream_counters(row: dict[str, Any], t: float) -> StreamCounters:
    return StreamCounters(t, row["id"], row.get("bytes") or 0, row.get("chunks") or 0,
                          row.get("events") or 0, row.get("comments") or 0,
                          row.get("max_gap_ms") or 0.0, bool(row.get("truncated")),
                          row.get("retry_ms"), row.get("first_byte_at"))


def stream_closed(row: dict[str, Any]) -> StreamClosed:
    t = row["closed_at"]
    return StreamClosed(t, row["id"], row.get("session_id"), row.get("close_reason") or "end",
                        stream_counters(row, t))


def chunk_seen(row: dict[str, Any]) -> ChunkSeen:
    size = row["size"] if "size" in row else len(row.get("data") or b"")
    return ChunkSeen(row["t"], row["stream_id"], row.get("session_id"), row.get("seq") or 0,
                     size)


def chunk_stored(row: dict[str, Any]) -> ChunkStored:
    return ChunkStored(row["id"], row["stream_id"], row["seq"], row["t"], row["offset"],
                       row.get("data") or b"")


def sse_seen(row: dict[str, Any]) -> SseSeen:
    return SseSeen(row["id"], row["stream_id"], row.get("session_id"), row["t"], row["kind"],
                   row.get("type"), row.get("data"), row.get("event_id"),
                   row.get("last_event_id"), row.get("retry"), row.get("start") or 0,
                   row.get("end") or 0)


def message_seen(row: dict[str, Any]) -> MessageSeen:
    text = row.get("json")
    return MessageSeen(row["id"], row["session_id"], row.get("exchange_id"),
                       row.get("stream_id"), row.get("sse_event_id"), row["t"],
                       row["direction"], row["kind"], row.get("rpc_id"), row.get("method"),
                       row.get("batch_index"), text, row.get("problem"), row.get("call_id"),
                       None if row["kind"] == "invalid" else stored_payload(text))


def injection_made(row: dict[str, Any]) -> InjectionMade:
    return InjectionMade(row["id"], row.get("session_id"), row.get("exchange_id"),
                         row.get("stream_id"), row["t"], row["spec"], row["kind"],
                         row["action"], row.get("detail"))


def events_of(table: str, row: dict[str, Any]) -> Iterator[Event]:
    """The events a stored row of `table` records, in the order the recorder emitted them."""
    if table == "sessions":
        yield session_opened(row)
        learned = session_learned(row, row["started_at"])
        if learned is not None:
            yield learned
    elif table == "exchanges":
        yield request_seen(row)
        if row.get("response_at") is not None:
            yield response_seen(row)
        if row.get("ended_at") is not None:
            yield exchange_ended(row)
    elif table == "streams":
        yield stream_opened(row)
        if row.get("closed_at") is not None:
            yield stream_closed(row)
    elif table == "chunks":
        yield chunk_stored(row)
    elif table == "sse_events":
        yield sse_seen(row)
    elif table == "messages":
        yield message_seen(row)
    elif table == "injections":
        yield injection_made(row)
