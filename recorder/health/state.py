"""What the detectors remember: per-session, call, exchange and stream values, and helpers.

The values shared by every concern live in `context.Context`; what one concern alone keeps
(attempts, truncations, closes...) is declared here too and held by its detector.
"""

from __future__ import annotations

import ipaddress
import re
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from recorder.events import MessageSeen
from recorder.health.config import KNOWN_TIMEOUTS


def secs(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def payload_of(message: MessageSeen) -> Any:
    """The message's decoded payload, as a stored capture gives it back.

    A message whose JSON was over the storage cap keeps its kind, method and id but not its
    text, so `ssetap check` cannot see its payload; the live checks ignore it too, or live and
    offline verdicts would differ."""
    return message.payload if message.json is not None else None


def timeout_cause(seconds: float) -> str | None:
    for constant, who in KNOWN_TIMEOUTS.items():
        if abs(constant - seconds) < 1e-6:
            return who
    return None


def foreign_origin(origin: str) -> bool:
    """An Origin a loopback server should refuse: `null`, or a web origin not on loopback."""
    origin = origin.strip()
    if origin.lower() == "null":
        return True
    return not is_loopback_host(urlsplit(origin).hostname)


_SUFFIX = re.compile(r"(\d+)$")


def numeric_suffix(event_id: str) -> int | None:
    match = _SUFFIX.search(event_id)
    return int(match.group(1)) if match else None




@dataclass(slots=True)
class Break:
    """A stream that issued event ids and ended before its work was done: a resume is due."""

    stream_id: int
    last_id: str
    at: float


@dataclass(slots=True)
class SessionState:
    id: int
    key: str = ""
    transport: str = ""
    client: tuple[str, str] = ("", "")  # client host, user agent
    ok: int = 0  # 2xx answers to requests that named this session
    last_ok_at: float | None = None
    deleted: bool = False
    ending: bool = False  # the client sent DELETE: its streams close on purpose
    initialized: bool = False
    work: int = 0  # client requests besides initialize and ping: the session did something
    fresh_legacy: bool = False  # its endpoint event was recorded: it began in this capture
    not_found: int = 0
    not_found_at: float | None = None
    pending_break: Break | None = None
    event_ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (lane, pos)
    lane_ids: dict[int, list[str]] = field(default_factory=dict)  # lane -> ids in order
    resumed: dict[int, float] = field(default_factory=dict)  # lane -> when a resume opened


@dataclass(slots=True)
class CallState:
    """What the checks add to a call the correlator opened (recorder.correlate pairs it)."""

    call_id: int
    session: int
    direction: str
    rpc_id: str
    method: str
    name: str | None
    message_id: int
    exchange_id: int | None
    sent_at: float
    deadline: float
    progress_token: str | None = None
    progress: int = 0
    last_progress_at: float | None = None
    cancelled_at: float | None = None
    cancel_reason: str | None = None
    stream_id: int | None = None
    carrier_closed_at: float | None = None
    carrier_close: str | None = None
    rejected: int | None = None  # HTTP status that refused the carrying POST

    @property
    def label(self) -> str:
        what = f"{self.method} {self.name}" if self.name else self.method
        return f"{what} (id {self.rpc_id})"


@dataclass(slots=True)
class ExchangeState:
    id: int
    method: str
    path: str
    url: str
    server: str
    host: str
    port: int | None
    scheme: str
    client: tuple[str, str]
    started_at: float
    headers: dict[str, str]
    mcp: bool
    named: bool = False  # the request named its session (Mcp-Session-Id or legacy query)
    session_id: int | None = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)  # folded once, lower-case
    stream_id: int | None = None
    calls: list[int] = field(default_factory=list)  # call ids its body opened
    invalid: list[MessageSeen] = field(default_factory=list)
    valid_rpc: bool = False
    error_texts: list[str] = field(default_factory=list)
    sse: bool = False
    stream_reason: str | None = None
    stream_retry_ms: int | None = None
    attempt_key: tuple[str, ...] | None = None


@dataclass(slots=True)
class StreamState:
    id: int
    exchange_id: int | None
    session_id: int | None
    method: str
    path: str
    role: str
    opened_at: float
    last_event_id_sent: str | None
    lane: int
    last_byte: float | None = None
    last_heartbeat: float | None = None
    heartbeats: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    retry_ms: int | None = None
    last_id: str | None = None
    incomplete: bool = False
    valid_rpc: bool = False
    # The burst in progress (chunks closer together than burst_window).
    burst_started: float | None = None
    burst_last: float = 0.0
    burst_silence: float = 0.0
    burst_items: int = 0
    burst_heartbeats: int = 0
    burst_progress: int = 0
    burst_explained: bool = False
    # cadence(), kept until the next heartbeat: it is read on every chunk and tick, and is
    # two medians of up to 64 samples. (Add heartbeats with note_heartbeat, which forgets it.)
    _cadence: tuple[float, float, int] | None = field(default=None, init=False, repr=False,
                                                      compare=False)
    _cadence_known: bool = field(default=False, init=False, repr=False, compare=False)

    def label(self) -> str:
        return f"{self.method} {self.path} (stream #{self.id})"

    def note_heartbeat(self, interval: float) -> None:
        """One more interval between heartbeats (the cadence is measured again when read)."""
        self.heartbeats.append(interval)
        self._cadence_known = False

    def cadence(self) -> tuple[float, float, int] | None:
        """(median, MAD, samples) of the intervals between heartbeats, if any were seen."""
        if not self._cadence_known:
            self._cadence = self._measure_cadence()
            self._cadence_known = True
        return self._cadence

    def _measure_cadence(self) -> tuple[float, float, int] | None:
        samples = list(self.heartbeats)
        if not samples:
            return None
        median = statistics.median(samples)
        mad = statistics.median([abs(s - median) for s in samples])
        return median, mad, len(samples)


@dataclass(slots=True)
class Attempts:
    """GET stream attempts of one client on one URL (the reconnect-storm subject)."""

    open: int = 0
    last_end: float | None = None
    last_failed: bool = False
    last_lived: float = 0.0
    last_reason: str | None = None
    last_retry_ms: int | None = None
    reconnects: deque[float] = field(default_factory=deque)
    delays: list[float] = field(default_factory=list)
    retry_violations: int = 0
    session_id: int | None = None
    sessions: deque[int] = field(default_factory=lambda: deque(maxlen=64))  # in attempt order


@dataclass(slots=True)
class InitLoop:
    """The initializes of one client at one server (the re-initialize storm subject)."""

    last_session: int | None = None
    last_at: float = 0.0
    loops: deque[tuple[float, int]] = field(default_factory=deque)  # (when, new session)


@dataclass(slots=True)
class RetryAfter:
    """A 429/503 answer's `Retry-After`, to see whether the client waited for it."""

    until: float
    seconds: float
    status: int
    early: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    """A stream close that no known constant explains, kept to spot values that recur."""

    value: float
    is_idle: bool
    stream_id: int
    label: str
    how: str
    session_id: int | None
    exchange_id: int | None


@dataclass(frozen=True, slots=True)
class Suspect:
    """A client-closed stream at a round idle time, flagged only if the client reconnects."""

    stream_id: int
    closed_at: float
    text: str
    links: dict[str, Any]
    due: float


class Said(NamedTuple):
    """A message with the exchange and stream it travelled on, kept until its call event.

    (A NamedTuple: one is made per message, where a frozen dataclass costs several times more.)
    """

    message: MessageSeen
    exchange: ExchangeState | None
    stream: StreamState | None


@dataclass(slots=True)
class Truncation:
    stream: StreamState
    calls: list[int]
    closed_at: float
    reason: str
    due: float


def session_list(ids: Iterable[int]) -> str:
    """`#3, #4 ... #9` for a flag message (long lists shortened, all ids stay in details)."""
    shown = [f"#{i}" for i in dict.fromkeys(ids)]
    if len(shown) > 6:
        shown = [*shown[:3], "...", *shown[-2:]]
    return ", ".join(shown)
