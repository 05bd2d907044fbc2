"""What the detail pane shows for one timeline row, read in a worker thread (no Textual here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from recorder.store import BrowseReader
from tui.rows import format_offset
from tui.timeline_index import (
    CAPTURE_GAP,
    EXCHANGE,
    GAP,
    MESSAGE,
    SSE,
    STREAM_CLOSE,
    STREAM_OPEN,
    RowKey,
)

# Bodies and event data bigger than this are not parsed for the tree (the copy still has them).
MAX_TREE_TEXT = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Detail:
    """Everything the detail tabs need for one row.

    `payload` feeds the JSON tree (a message's JSON, or the row's own fields); `json_text` is
    the message exactly as stored, for copying; `chunks` are the stored chunks overlapping the
    row's SSE bytes [`byte_range`).
    """

    key: RowKey
    title: str
    payload: Any = None
    json_text: str | None = None
    exchange: dict[str, Any] | None = None
    byte_range: tuple[int, int] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    call: dict[str, Any] | None = None
    call_messages: list[dict[str, Any]] = field(default_factory=list)


def _loads(text: str | bytes | None) -> Any:
    if text is None or len(text) > MAX_TREE_TEXT:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _headers(raw: str | None) -> list[tuple[str, str]]:
    if not raw:
        return []
    try:
        return [(str(k), str(v)) for k, v in orjson.loads(raw)]
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return []


def _exchange(reader: BrowseReader, exchange_id: int | None) -> dict[str, Any] | None:
    if exchange_id is None:
        return None
    row = reader.exchange(exchange_id)
    if row is None:
        return None
    row = dict(row)
    row["request_headers"] = _headers(row.get("request_headers"))
    row["response_headers"] = _headers(row.get("response_headers"))
    return row


def _fields(row: dict[str, Any], started_at: float, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row's columns for the tree, times shown relative to the session start."""
    shown: dict[str, Any] = {}
    for name, value in row.items():
        if name in drop or isinstance(value, bytes):
            continue
        if value is not None and (name == "t" or name.endswith("_at")) and isinstance(
                value, float):
            value = format_offset(value - started_at)
        shown[name] = value
    return shown


def _sse(reader: BrowseReader, event_id: int | None) -> tuple[dict[str, Any] | None,
                                                                list[dict[str, Any]]]:
    if event_id is None:
        return None, []
    event = reader.sse_event(event_id)
    if event is None:
        return None, []
    return event, reader.stream_bytes(event["stream_id"], event["start"], event["end"])


def _call(reader: BrowseReader, call_id: int | None) -> tuple[dict[str, Any] | None,
                                                              list[dict[str, Any]]]:
    if call_id is None:
        return None, []
    return reader.call(call_id), reader.call_messages(call_id)


def load_detail(reader: BrowseReader, key: RowKey, started_at: float) -> Detail:
    source, row_id = key
    if source == MESSAGE:
        message = reader.message(row_id)
        if message is None:
            return Detail(key, f"message {row_id} (not found)")
        event, chunks = _sse(reader, message.get("sse_event_id"))
        call, call_messages = _call(reader, message.get("call_id"))
        title = f"message {row_id} · {message['direction']} {message['kind']}"
        if message.get("method"):
            title += f" {message['method']}"
        return Detail(key, title, payload=_loads(message.get("json")),
                      json_text=message.get("json"),
                      exchange=_exchange(reader, message.get("exchange_id")),
                      byte_range=(event["start"], event["end"]) if event else None,
                      chunks=chunks, call=call, call_messages=call_messages)
    if source == EXCHANGE:
        exchange = _exchange(reader, row_id)
        if exchange is None:
            return Detail(key, f"exchange {row_id} (not found)")
        payload = _fields(exchange, started_at, drop=("request_headers", "response_headers",
                                                      "request_body", "response_body"))
        for part in ("request", "response"):
            body = exchange.get(f"{part}_body")
            if body:
                parsed = _loads(body)
                payload[f"{part}_body"] = parsed if parsed is not None else \
                    body[:2000].decode("utf-8", "replace")
        return Detail(key, f"HTTP exchange {row_id} · {exchange['method']} {exchange['path']}",
                      payload=payload, exchange=exchange)
    if source in (STREAM_OPEN, STREAM_CLOSE):
        stream = reader.stream(row_id)
        if stream is None:
            return Detail(key, f"stream {row_id} (not found)")
        verb = "opened" if source == STREAM_OPEN else "closed"
        return Detail(key, f"SSE stream {row_id} {verb}", payload=_fields(stream, started_at),
                      exchange=_exchange(reader, stream.get("exchange_id")))
    if source == SSE:
        event, chunks = _sse(reader, row_id)
        if event is None:
            return Detail(key, f"SSE item {row_id} (not found)")
        stream = reader.stream(event["stream_id"])
        payload = _fields(event, started_at)
        parsed = _loads(event.get("data")) if event.get("kind") == "event" else None
        if parsed is not None:
            payload["data"] = parsed
        return Detail(key, f"SSE {event['kind']} {row_id} on stream {event['stream_id']}",
                      payload=payload, byte_range=(event["start"], event["end"]), chunks=chunks,
                      exchange=_exchange(reader, stream.get("exchange_id") if stream else None))
    if source == GAP:
        return Detail(key, f"{row_id / 1000:,.1f} s of silence",
                      payload={"silence_ms": row_id,
                               "meaning": "nothing crossed the wire in this session for this "
                                          "long: no request, response, event or heartbeat"})
    if source == CAPTURE_GAP:
        found = reader.capture_gap_rows([row_id])
        if not found:
            return Detail(key, f"capture gap {row_id} (not found)")
        gap = found[0]
        payload = _fields(gap, started_at)
        payload["meaning"] = ("this passed through the proxy untouched but is not in the "
                              "capture: " + _GAP_MEANINGS.get(gap["reason"], gap["reason"]))
        return Detail(key, f"capture gap {row_id} ({gap['reason']})", payload=payload,
                      exchange=_exchange(reader, gap.get("exchange_id")))
    return Detail(key, "unknown row")


_GAP_MEANINGS = {
    "overload": "the recorder fell too far behind the wire and shed it",
    "worker-died": "the recording process died and was restarted",
    "write-failed": "the disk refused the write (full, I/O error, locked)",
    "stopped": "the recording stopped before it could be written",
}
