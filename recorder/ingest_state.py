"""What ingest keeps while it turns the proxy's facts into events: its sink, observers, and the
per-session, per-flow and per-stream state, with the small value helpers it applies to them.

Kept apart from recorder/ingest.py (the transitions) so that module holds one concern.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from recorder.events import Event
from recorder.gaps import CaptureGap
from recorder.sse import SseParser

# Stored bodies and event data are capped; the full size is kept beside them.
MAX_STORED_BODY = 64 * 1024 * 1024


class Sink(Protocol):
    """Where ingest's events go: the redaction stage in front of the store writer."""

    def next_id(self, table: str) -> int: ...
    def record(self, event: Event) -> Event: ...
    def record_gap(self, gap: CaptureGap) -> None: ...
    def flush_stream(self, stream_id: int) -> None: ...
    def flush_quiet(self, now: float, older_than: float) -> None: ...
    def flush_all(self) -> None: ...
    def submit(self) -> None: ...


# Observers see each event as stored (redacted), in time order: recorder.events.
Observer = Callable[[Event], None]


@dataclass(slots=True)
class SessionState:
    id: int
    key: str
    transport: str
    last_seen: float
    dirty: bool = False
    initialized: bool = False


@dataclass(slots=True)
class StreamState:
    id: int
    parser: SseParser
    opened_at: float
    last_byte_at: float | None = None
    first_byte_at: float | None = None
    byte_count: int = 0
    chunks: int = 0
    events: int = 0
    comments: int = 0
    max_gap_ms: float = 0.0
    truncated: bool = False
    retry_ms: int | None = None
    stored_offset: int = 0
    written: int = 0
    dirty: bool = False
    # After a gap: the parser skips to the end of the event the gap cut (`resync_tail` holds
    # the last bytes looked at), and the gap waits to count that event too.
    resync: bool = False
    resync_tail: bytes = b""
    pending_gap: CaptureGap | None = None
    # Compressed SSE (a buffering hazard in itself) is inflated for the parser; raw chunks keep
    # the wire bytes, so event offsets then count inflated bytes.
    decoder: Any = None


@dataclass(slots=True)
class FlowState:
    exchange_id: int
    method: str
    url: str
    path: str
    started_at: float
    client_addr: str
    user_agent: str
    server: str
    headers: dict[str, str]
    body: bytes | None
    session: SessionState | None = None
    stream: StreamState | None = None
    deferred: list[Any] = field(default_factory=list)
    mcp: bool = False
    response_headers: dict[str, str] = field(default_factory=dict)
    response_parts: list[bytes] = field(default_factory=list)
    response_size: int = 0
    response_last_t: float | None = None
    response_gap: bool = False


def lower_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers}


def decoded(body: bytes, encoding: str) -> bytes:
    """Undo gzip/deflate so JSON bodies can be read; other encodings are stored as they came."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(body, wbits=47 if encoding != "deflate" else 15)
        except zlib.error:
            return body
    return body


def cap(data: bytes | None) -> bytes | None:
    if data is None or len(data) <= MAX_STORED_BODY:
        return data
    return data[:MAX_STORED_BODY]
