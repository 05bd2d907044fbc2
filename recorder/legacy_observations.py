"""TEMPORARY: the recorder's events as the row-shaped observations the detectors still read.

Removed when recorder.health and recorder.otel_live consume recorder.events directly (in
progress on the health-events branch). Until then, the live checks and `ssetap check` pass
every event through `as_observations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recorder.events import (
    ChunkSeen,
    Event,
    ExchangeEnded,
    InjectionMade,
    MessageSeen,
    RequestSeen,
    ResponseSeen,
    SessionLearned,
    SessionOpened,
    SseSeen,
    StreamClosed,
    StreamOpened,
    Tick,
)
from recorder.store.event_rows import INSERTS, headers_json


@dataclass(frozen=True, slots=True)
class Observation:
    kind: str
    t: float
    row: dict[str, Any]


def _inserted(event: Any) -> dict[str, Any]:
    columns = INSERTS[type(event)][1]
    return dict(zip(columns, event[:len(columns)], strict=True))


def as_observations(event: Event) -> list[Observation]:
    kind = type(event)
    e: Any = event
    if kind is SessionOpened:
        return [Observation("session", e.t, _inserted(e))]
    if kind is SessionLearned:
        facts = {k: v for k, v in zip(SessionLearned._fields[2:], e[2:], strict=True)
                 if v is not None}
        return [Observation("session", e.t, {"id": e.session_id, **facts})]
    if kind is RequestSeen:
        return [Observation("exchange", e.t, {
            "id": e.id, "flow_id": e.flow_id, "method": e.method, "url": e.url,
            "path": e.path, "request_headers": headers_json(e.request_headers),
            "request_body": e.request_body, "request_content_type": e.request_content_type,
            "started_at": e.started_at, "client_addr": e.client_addr, "mcp": int(e.mcp),
            "request_size": e.request_size})]
    if kind is ResponseSeen:
        return [Observation("response", e.t, {
            "id": e.id, "status": e.status, "reason": e.reason,
            "response_headers": headers_json(e.response_headers),
            "response_content_type": e.response_content_type, "response_at": e.t,
            "streamed": int(e.streamed), "mcp": int(e.mcp), "session_id": e.session_id})]
    if kind is StreamOpened:
        return [Observation("stream-open", e.t, _inserted(e))]
    if kind is ChunkSeen:
        return [Observation("chunk", e.t, {"stream_id": e.stream_id, "seq": e.seq, "t": e.t,
                                           "size": e.size, "session_id": e.session_id})]
    if kind is SseSeen:
        return [Observation("sse", e.t, _inserted(e))]
    if kind is MessageSeen:
        return [Observation("message", e.t, _inserted(e))]
    if kind is StreamClosed:
        c = e.counters
        return [Observation("stream-close", e.t, {
            "id": e.stream_id, "bytes": c.bytes, "chunks": c.chunks, "events": c.events,
            "comments": c.comments, "max_gap_ms": round(c.max_gap_ms, 3),
            "truncated": int(c.truncated), "retry_ms": c.retry_ms,
            "first_byte_at": c.first_byte_at, "closed_at": e.t,
            "close_reason": e.close_reason, "session_id": e.session_id})]
    if kind is ExchangeEnded:
        row = {"id": e.id, "ended_at": e.t, "error": e.error, "mcp": int(e.mcp),
               "session_id": e.session_id, "response_body": e.response_body}
        return [Observation("exchange-end", e.t, row)]
    if kind is InjectionMade:
        return [Observation("injection", e.t, _inserted(e))]
    if kind is Tick:
        return [Observation("tick", e.t, {})]
    return []
