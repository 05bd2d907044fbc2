"""The values a capture is read into for replay: sessions, messages, calls, streams (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RecordingError(Exception):
    """The capture cannot be replayed as asked (no such session, nothing to replay)."""


@dataclass(frozen=True, slots=True)
class RecordedSession:
    """The facts about a session that replay needs."""

    id: int
    key: str
    transport: str
    server: str
    endpoint: str | None
    protocol_version: str | None
    started_at: float

    @property
    def stateless(self) -> bool:
        """No session id was ever issued (the recorder groups such traffic as `anon:N`)."""
        return self.key.startswith("anon:")


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One JSON-RPC message as the recorder stored it; `payload` is the decoded object."""

    id: int
    t: float
    direction: str
    kind: str
    rpc_id: str | None
    method: str | None
    payload: Any
    call_id: int | None
    exchange_id: int | None
    stream_id: int | None
    sse_event_id: int | None


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A request with its outcome, as the recorder's correlator paired it."""

    id: int
    direction: str
    rpc_id: str
    method: str
    name: str | None
    request_message_id: int | None
    response_message_id: int | None
    sent_at: float
    answered_at: float | None
    latency_ms: float | None
    outcome: str
    cancelled_at: float | None


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """An HTTP exchange, without its headers (never replayed) or bodies (messages have them)."""

    id: int
    method: str
    path: str
    status: int | None
    response_content_type: str | None
    started_at: float


@dataclass(frozen=True, slots=True)
class RecordedSseItem:
    """An SSE event, comment or control block with its receive time."""

    id: int
    stream_id: int
    t: float
    kind: str  # event, comment, control, incomplete, oversize
    type: str | None
    data: str | None
    event_id: str | None
    retry: int | None


@dataclass(frozen=True, slots=True)
class RecordedStream:
    """An SSE response body: a POST reply, the standalone GET, a resume or the legacy stream."""

    id: int
    exchange_id: int
    method: str
    role: str
    opened_at: float
    closed_at: float | None


@dataclass(frozen=True, slots=True)
class Recording:
    """One recorded session, everything replay and the mock read from it."""

    capture: str
    session: RecordedSession
    messages: tuple[RecordedMessage, ...]
    calls: tuple[RecordedCall, ...]
    exchanges: tuple[RecordedExchange, ...] = ()
    streams: tuple[RecordedStream, ...] = ()
    sse_items: tuple[RecordedSseItem, ...] = ()
    # How the recorded server ended SSE lines ("\r\n" for Python servers, "\n" for TS ones).
    line_separator: str = "\r\n"
