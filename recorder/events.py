"""The recorder's typed events: what ingest learned from the wire, for the store and the checks.

Theory of operation:
- Ingest turns the proxy's raw facts (recorder.wire) into these values, one per thing it
  learned: a session opened, a request seen, an SSE item parsed, a message decoded, a call
  answered. Each goes through the redaction stage (recorder.redact_stage), which returns it
  redacted, then to the store writer (recorder.store.event_rows maps it to its table's row)
  and to the observers (the live checks, the live span exporter). `ssetap check` rebuilds the
  same values from a stored capture (recorder.store.event_rows again), so the detectors see one
  shape live and offline, as mitmproxy's hooks.py gives every addon one typed event per hook.
- Observers see every event but `ChunkStored` (a stream's bytes, which the redaction stage may
  hold back briefly); `ChunkSeen` tells them when bytes arrived. Call events follow the
  `MessageSeen` that caused them.
- Values are `typing.NamedTuple`s: immutable and typed like a frozen dataclass, but built at
  the speed of a tuple (a frozen dataclass's `__init__` goes through `object.__setattr__` per
  field: 1.4 us against 0.3 us for a twelve-field value on CPython 3.11, 2.3 against 0.4 on
  3.13), and the writer turns an event into SQL parameters with a slice. That matters here:
  a busy stream produces several events per SSE event. Fields that are also columns come
  first, so a slice is the insert's parameters (recorder.store.event_rows checks this).
- Headers travel as tuples of (name, value) as they came; `header_map` folds them, lower-cased,
  for lookups. A message carries its decoded `payload` beside its source text, so no consumer
  parses JSON that ingest already parsed.
- Call events come from recorder.correlate, the one place requests are paired with their
  answers, progress and cancellations; the checks read the pairing from them.
- Every event has `t`, the time on the wire (the proxy's clock) of what it reports.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from recorder.gaps import CaptureGap

Headers = tuple[tuple[str, str], ...]


def header_map(headers: Headers | None) -> dict[str, str]:
    """Headers as a lower-case dict; repeated names are joined with ", " (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for name, value in headers or ():
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


# --- Sessions --------------------------------------------------------------------------------


class SessionOpened(NamedTuple):
    """A session ssetap had not seen: its key (`sid:`, `legacy:`, `anon:`...) and who talks."""

    id: int
    key: str
    transport: str
    server: str
    endpoint: str | None
    started_at: float
    ended_at: float
    client_addr: str | None
    user_agent: str | None

    @property
    def t(self) -> float:
        return self.started_at


class SessionLearned(NamedTuple):
    """Facts the handshake taught about a session (None: not taught by this message)."""

    t: float
    session_id: int
    client_name: str | None = None
    client_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    protocol_version: str | None = None
    requested_protocol_version: str | None = None


class SessionSeen(NamedTuple):
    """A session was active until `t` (its `ended_at`, stored about once a second)."""

    t: float
    session_id: int


class SessionJoined(NamedTuple):
    """An exchange (and its stream, if any) turned out to belong to a session."""

    t: float
    session_id: int
    exchange_id: int
    stream_id: int | None = None
    stream_role: str | None = None  # a legacy GET stream is named once its endpoint arrives


# --- HTTP exchanges --------------------------------------------------------------------------


class RequestSeen(NamedTuple):
    """An HTTP request, as the client sent it (its body capped; `request_size` is its size)."""

    id: int
    flow_id: str
    method: str
    url: str
    path: str
    request_headers: Headers
    request_body: bytes | None
    request_content_type: str | None
    started_at: float
    client_addr: str
    mcp: bool
    request_size: int
    session_id: int | None = None  # known at once when the request names its session

    @property
    def t(self) -> float:
        return self.started_at

    def headers(self) -> dict[str, str]:
        return header_map(self.request_headers)


class ResponseSeen(NamedTuple):
    """The response's status line and headers."""

    id: int
    t: float
    status: int
    reason: str
    response_headers: Headers
    response_content_type: str | None
    streamed: bool
    mcp: bool
    session_id: int | None

    def headers(self) -> dict[str, str]:
        return header_map(self.response_headers)


class ExchangeEnded(NamedTuple):
    """The exchange is over: its response complete (`error` None) or failed.

    `response_body` is what is stored of a response that was not an SSE stream (None: nothing
    to store, e.g. part of it was shed); `response_size` its size on the wire (0: none)."""

    id: int
    t: float
    error: str | None
    mcp: bool
    session_id: int | None
    response_body: bytes | None = None
    response_size: int = 0


# --- SSE streams -----------------------------------------------------------------------------


class StreamOpened(NamedTuple):
    """A 2xx `text/event-stream` response began; `role` is post, get, resume or legacy."""

    id: int
    exchange_id: int
    session_id: int | None
    method: str
    role: str
    last_event_id_sent: str | None
    opened_at: float
    content_encoding: str | None

    @property
    def t(self) -> float:
        return self.opened_at


class ChunkSeen(NamedTuple):
    """Bytes arrived on a stream (for the checks' timing; the bytes are in `ChunkStored`)."""

    t: float
    stream_id: int
    session_id: int | None
    seq: int
    size: int


class ChunkStored(NamedTuple):
    """A stream's bytes as stored: `offset` counts the stream's bytes before them."""

    id: int
    stream_id: int
    seq: int
    t: float
    offset: int
    data: bytes


class SseSeen(NamedTuple):
    """One parsed SSE item: kind `event`, `comment` (heartbeats), `control` (id/retry only),
    `incomplete` (the stream ended mid-event) or `oversize` (a line over the bound)."""

    id: int
    stream_id: int
    session_id: int | None
    t: float
    kind: str
    type: str | None
    data: str | None
    event_id: str | None
    last_event_id: str | None
    retry: int | None
    start: int
    end: int


class StreamCounters(NamedTuple):
    """A stream's running totals (stored about once a second, and at its close)."""

    t: float
    stream_id: int
    bytes: int
    chunks: int
    events: int
    comments: int
    max_gap_ms: float
    truncated: bool
    retry_ms: int | None
    first_byte_at: float | None


class StreamClosed(NamedTuple):
    """A stream ended: `close_reason` is end, error, client-disconnect or recorder-stop."""

    t: float
    stream_id: int
    session_id: int | None
    close_reason: str
    counters: StreamCounters

    @property
    def retry_ms(self) -> int | None:
        return self.counters.retry_ms


# --- JSON-RPC --------------------------------------------------------------------------------


class MessageSeen(NamedTuple):
    """One JSON-RPC message (a batch gives one per member, with `batch_index`).

    `json` is its text as stored (None when over the cap or not JSON); `payload` the decoded
    value the checks read (None when invalid). `call_id` links it to its call, if any."""

    id: int
    session_id: int
    exchange_id: int | None
    stream_id: int | None
    sse_event_id: int | None
    t: float
    direction: str
    kind: str
    rpc_id: str | None
    method: str | None
    batch_index: int | None
    json: str | None
    problem: str | None
    call_id: int | None
    payload: Any = None


class CallOpened(NamedTuple):
    """A request opened a call. `replaced` is the call id a reused request id replaced."""

    id: int
    session_id: int
    direction: str
    rpc_id: str
    method: str
    name: str | None
    request_message_id: int
    sent_at: float
    outcome: str
    progress_token: str | None
    replaced: int | None = None

    @property
    def t(self) -> float:
        return self.sent_at


class CallAnswered(NamedTuple):
    """A call's response arrived (`late`: after the client cancelled it)."""

    t: float
    call_id: int
    session_id: int
    response_message_id: int
    latency_ms: float
    outcome: str | None  # None for a late answer: the call stays cancelled
    error_code: int | None
    error_message: str | None
    late: bool


class CallProgressed(NamedTuple):
    """A progress notification for a call (`progress_count` so far)."""

    t: float
    call_id: int
    session_id: int
    progress_count: int


class CallCancelled(NamedTuple):
    """The caller cancelled the call (`notifications/cancelled`)."""

    t: float
    call_id: int
    session_id: int
    cancel_message_id: int
    cancel_reason: str | None


class CallOrphan(NamedTuple):
    """A message that names a call the correlator does not hold open.

    `what`: "orphan" (an answer to nothing outstanding), "cancel-unknown", "progress-unknown".
    `call_id` is the finished call it names, if there is one."""

    t: float
    session_id: int
    message_id: int
    what: str
    call_id: int | None = None


# --- The rest ----------------------------------------------------------------------------------


class InjectionMade(NamedTuple):
    """`--fault` changed this flow on purpose (recorder.faults.Injection, as stored)."""

    id: int
    session_id: int | None
    exchange_id: int | None
    stream_id: int | None
    t: float
    spec: str
    kind: str
    action: str
    detail: str | None


class Tick(NamedTuple):
    """The recording process's clock (or check's replayed one): time passes with no traffic."""

    t: float


# What the recording could not keep (recorder.gaps.CaptureGap, its `t` is when the gap ended)
# is shown to observers too: bytes passed the proxy then, though they are not in the capture.
Event = (SessionOpened | SessionLearned | SessionSeen | SessionJoined | RequestSeen
         | ResponseSeen | ExchangeEnded | StreamOpened | ChunkSeen | ChunkStored | SseSeen
         | StreamCounters | StreamClosed | MessageSeen | CallOpened | CallAnswered
         | CallProgressed | CallCancelled | CallOrphan | InjectionMade | Tick | CaptureGap)
