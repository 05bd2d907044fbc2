"""Stream-health, protocol and security checks: recorder observations in, flags out."""

# Design notes: the rules this module keeps, and why.
# - Sans-IO. Input is the recorder's `Observation`s in time order. They come live from
#   recorder.ingest, or rebuilt from a stored capture by recorder.check. Output is `Flag`s.
#   There are no timers: the clock is each observation's `t`. `tick` observations move it
#   forward, so a stream that goes quiet is flagged *while* it is quiet, not when it closes.
#   Periodic checks (silent streams, overdue calls, recovery deadlines) run on ticks only.
#   That way a live run (ticks every 0.2 s) and an offline run (ticks interpolated by the
#   caller) reach the same verdicts.
# - Once per subject. Each kind fires at most once for its subject: a stream, a call, a
#   message, a session, a client's reconnect loop, or a server for the security findings.
#   A sick stream gives one line, not one per tick.
# - False positives are bugs. What the official SDKs do in a healthy session is normal by
#   rule:
#   - POST streams that close right after their response;
#   - a client closing its own GET;
#   - 405 on GET;
#   - the failed POST before a legacy GET fallback (a 4xx: the call is rejected, not pending);
#   - 202 answers;
#   - a brand-new client that re-initializes after a 404;
#   - a server ending the GET while the client DELETEs its session;
#   - a server closing a stream after sending `retry:` (2025-11-25 polling);
#   - heartbeats that merely drift.
#   A client closing its own stream at a round idle time counts as a timeout only if the
#   client then reconnects; otherwise it was ending its session.
#   Every flag needs evidence: a learned cadence, a response that never came, a deadline that
#   recurs, or a burst after silence that no fresh request explains. Thresholds are generous
#   and all live in `HealthConfig`.
# - Own bookkeeping. The detector keeps its own view of calls, streams and event ids (keyed
#   like the correlator: session, direction, id with its JSON type). It reads only
#   observation rows, so any stored capture can be re-checked with new rules or thresholds.
# - Memory follows what is open. Streams, pending calls and exchanges are dropped when they
#   end. Per-session indexes of answered ids and event ids stay, because later checks
#   (orphans, duplicates, resumption) need them: memory grows with a capture's calls and
#   event ids, never with its bytes.

from __future__ import annotations

import ipaddress
import re
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from recorder.ingest import Observation
from recorder.model import C2S, S2C, Flag

# Flag kinds (part of ssetap's interface) with their default severities.
HEARTBEAT_MISSING = "heartbeat-missing"
IDLE_TIMEOUT_CLOSE = "idle-timeout-close"
BUFFERED_STREAM = "buffered-stream"
STREAM_TRUNCATED = "stream-truncated"
RECONNECT_STORM = "reconnect-storm"
RESUME_GAP = "resume-gap"
REQUEST_TIMEOUT = "request-timeout"
LATE_RESPONSE = "late-response"
ORPHAN_RESPONSE = "orphan-response"
DUPLICATE_ID = "duplicate-id"
ERROR_RESPONSE = "error-response"
SESSION_NOT_FOUND = "session-not-found"
REINIT_MISSING = "reinit-missing"
INVALID_MESSAGE = "invalid-message"
PLAINTEXT_REMOTE = "plaintext-remote"
TOKEN_IN_URL = "token-in-url"
WILDCARD_CORS = "wildcard-cors"
ORIGIN_ACCEPTED = "origin-accepted"
MISSING_AUTH = "missing-auth"

FLAG_KINDS: dict[str, str] = {
    HEARTBEAT_MISSING: "warning",
    IDLE_TIMEOUT_CLOSE: "warning",
    BUFFERED_STREAM: "warning",
    STREAM_TRUNCATED: "warning",
    RECONNECT_STORM: "error",
    RESUME_GAP: "error",
    REQUEST_TIMEOUT: "error",  # "slow, not hung" (progress kept coming) is a warning
    LATE_RESPONSE: "warning",
    ORPHAN_RESPONSE: "warning",
    DUPLICATE_ID: "error",  # a warning when the first request had already completed
    ERROR_RESPONSE: "info",
    SESSION_NOT_FOUND: "error",
    REINIT_MISSING: "error",
    INVALID_MESSAGE: "warning",
    PLAINTEXT_REMOTE: "warning",
    TOKEN_IN_URL: "error",
    WILDCARD_CORS: "warning",
    ORIGIN_ACCEPTED: "warning",
    MISSING_AUTH: "info",
}

# Known idle or absolute deadlines in the path, and who usually sets them (failure-modes.md 1.2).
KNOWN_TIMEOUTS: dict[float, str] = {
    15.0: "Envoy's route timeout",
    30.0: "a 30 s client or gateway timeout",
    55.0: "a 55 s gateway timeout",
    60.0: "nginx proxy_read_timeout or an AWS ALB idle timeout",
    90.0: "a 90 s proxy timeout",
    100.0: "Cloudflare's proxy read timeout",
    120.0: "a 120 s proxy timeout",
    300.0: "undici's bodyTimeout, Node's requestTimeout or python-sdk's sse_read_timeout",
    600.0: "a 10 min gateway limit",
    900.0: "a 15 min gateway limit",
    3600.0: "Envoy's connection idle_timeout",
}

_IDLE_CAUSE = (". Usual cause: an idle or read timeout in a proxy, load balancer or client; "
               "send heartbeats more often, or raise the timeout")

_TOKEN_PARAM = re.compile(
    r"^(.*token.*|.*secret.*|.*passw(or)?d.*|pwd|.*api[-_]?key|apikey|key|.*[-_]key|auth|"
    r"authorization|credentials?|sig|signature|jwt|bearer)$",
    re.IGNORECASE,
)
_SESSION_PARAMS = frozenset({"session_id", "sessionid"})
_BUFFERING_PROXIES = ("nginx", "openresty")


class HealthConfigError(ValueError):
    """A threshold or option that cannot be understood."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Every threshold of the checks. Durations are seconds; 0 disables a deadline."""

    # heartbeat-missing: cadence learned per stream, else this fallback interval.
    heartbeat_interval: float = 15.0
    heartbeat_factor: float = 2.5  # quiet longer than factor x cadence ...
    heartbeat_slack: float = 1.0  # ... and longer than cadence + slack (jitter on fast cadences)
    # request-timeout: default deadline and per-method overrides (0 = no deadline).
    request_timeout: float = 60.0
    method_timeouts: tuple[tuple[str, float], ...] = (
        ("elicitation/create", 0.0),  # waits on a person
        ("sampling/createMessage", 0.0),  # waits on a model and often a person
        ("tasks/result", 0.0),  # blocks until the task ends, by design
    )
    # reconnect-storm.
    storm_window: float = 60.0
    storm_count: int = 10  # reconnects within the window
    storm_no_backoff: int = 5  # consecutive reconnects whose delays never grow
    storm_short_lived: float = 10.0  # a stream that lived less than this and ended: a failure
    # idle-timeout-close.
    idle_timeouts: tuple[float, ...] = tuple(KNOWN_TIMEOUTS)
    idle_tolerance: float = 0.02  # fraction of the constant ...
    idle_tolerance_max: float = 1.0  # ... capped at this many seconds
    idle_recur_count: int = 3  # closes at one value that make it "a value that recurs"
    idle_recur_min: float = 5.0  # recurring values shorter than this are not deadlines
    # buffered-stream.
    burst_events: int = 5  # SSE events and comments in one burst ...
    burst_gap: float = 2.0  # ... right after at least this much silence ...
    burst_gap_factor: float = 3.0  # ... and this many times the stream's median gap
    burst_window: float = 0.005  # chunks closer than this form one burst
    # stream-truncated: how long a stream that issued event ids may take to be resumed.
    resume_grace: float = 5.0
    # session-not-found: how long a client may take to re-initialize after a 404.
    session_recover_grace: float = 10.0
    # plaintext-remote, missing-auth: hosts ("host" or "host:port") to treat as remote though
    # they are loopback, e.g. the local end of an SSH tunnel or `kubectl port-forward`.
    remote_hosts: tuple[str, ...] = ()
    # Offline only: tick spacing used to replay the passing of time across silences.
    tick_interval: float = 0.5

    def timeout_for(self, method: str) -> float:
        for name, seconds in self.method_timeouts:
            if name == method:
                return seconds
        return self.request_timeout

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "method_timeouts":
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: str | float) -> float:
    """Seconds from `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds."""
    if isinstance(value, bool):
        raise HealthConfigError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise HealthConfigError(f"not a duration: {value!r} (use e.g. 30s, 500ms, 2m)")
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _UNITS[unit]
    if seconds < 0:
        raise HealthConfigError(f"a duration cannot be negative: {value!r}")
    return seconds


_DURATION_FIELDS = frozenset({
    "heartbeat_interval", "heartbeat_slack", "request_timeout", "storm_window",
    "storm_short_lived", "idle_tolerance_max", "idle_recur_min", "burst_gap", "burst_window",
    "resume_grace", "session_recover_grace", "tick_interval",
})


def config_from_mapping(data: Mapping[str, Any], base: HealthConfig | None = None) -> HealthConfig:
    """A config from JSON-like options (durations may be strings like "30s")."""
    config = base or HealthConfig()
    known = {f.name for f in fields(HealthConfig)}
    changes: dict[str, Any] = {}
    for name, value in data.items():
        key = name.replace("-", "_")
        if key not in known:
            raise HealthConfigError(f"unknown check option {name!r}")
        try:
            if key in _DURATION_FIELDS:
                changes[key] = parse_duration(value)
            elif key == "method_timeouts":
                if not isinstance(value, Mapping):
                    raise HealthConfigError("method_timeouts needs an object of method: duration")
                merged = dict(config.method_timeouts)
                merged.update({str(k): parse_duration(v) for k, v in value.items()})
                changes[key] = tuple(merged.items())
            elif key == "idle_timeouts":
                if not isinstance(value, list | tuple):
                    raise HealthConfigError("idle_timeouts needs a list of durations")
                changes[key] = tuple(sorted(parse_duration(v) for v in value))
            elif key == "remote_hosts":
                if not isinstance(value, list | tuple) \
                        or not all(isinstance(v, str) for v in value):
                    raise HealthConfigError("remote_hosts needs a list of host or host:port")
                changes[key] = tuple(v.lower() for v in value)
            elif key in ("storm_count", "storm_no_backoff", "idle_recur_count", "burst_events"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise HealthConfigError(f"{name} needs a positive integer")
                changes[key] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise HealthConfigError(f"{name} needs a non-negative number")
                changes[key] = float(value)
        except HealthConfigError as exc:
            if str(exc).startswith(name) or "unknown" in str(exc):
                raise
            raise HealthConfigError(f"{name}: {exc}") from None
    return replace(config, **changes)


# --- Small helpers ----------------------------------------------------------------------------


def _secs(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _header_map(text: Any) -> dict[str, str]:
    """Stored headers (a JSON list of [name, value]) as a lower-case dict."""
    if not text:
        return {}
    try:
        pairs = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    out: dict[str, str] = {}
    for pair in pairs if isinstance(pairs, list) else ():
        if isinstance(pair, list) and len(pair) == 2:
            name, value = str(pair[0]).lower(), str(pair[1])
            out[name] = f"{out[name]}, {value}" if name in out else value
    return out


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


def _json(text: Any) -> Any:
    if not isinstance(text, str | bytes) or not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _id_key(value: Any) -> str:
    return orjson.dumps(value).decode()


def _opposite(direction: str) -> str:
    return S2C if direction == C2S else C2S


def _timeout_cause(seconds: float) -> str | None:
    for constant, who in KNOWN_TIMEOUTS.items():
        if abs(constant - seconds) < 1e-6:
            return who
    return None


# --- State ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Break:
    """A stream that issued event ids and ended before its work was done: a resume is due."""

    stream_id: int
    last_id: str
    at: float


@dataclass(slots=True)
class _Session:
    id: int
    key: str = ""
    transport: str = ""
    client: tuple[str, str] = ("", "")  # client host, user agent
    ok: int = 0  # 2xx answers to requests that named this session
    last_ok_at: float | None = None
    deleted: bool = False
    ending: bool = False  # the client sent DELETE: its streams close on purpose
    initialized: bool = False
    fresh_legacy: bool = False  # its endpoint event was recorded: it began in this capture
    not_found: int = 0
    not_found_at: float | None = None
    pending_break: _Break | None = None
    answered: dict[tuple[str, str], float] = field(default_factory=dict)
    event_ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (lane, pos)
    lane_ids: dict[int, list[str]] = field(default_factory=dict)  # lane -> ids in order
    resumed: dict[int, float] = field(default_factory=dict)  # lane -> when a resume opened


@dataclass(slots=True)
class _Call:
    session: int
    direction: str
    rpc_id: str
    method: str
    name: str | None
    call_id: int | None
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
class _Exchange:
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
    session_id: int | None = None
    status: int | None = None
    stream_id: int | None = None
    calls: list[tuple[int, str, str]] = field(default_factory=list)
    invalid: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    valid_rpc: bool = False
    error_texts: list[str] = field(default_factory=list)
    sse: bool = False
    stream_reason: str | None = None
    stream_retry_ms: int | None = None
    attempt_key: tuple[str, ...] | None = None


@dataclass(slots=True)
class _Stream:
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

    def label(self) -> str:
        return f"{self.method} {self.path} (stream #{self.id})"

    def cadence(self) -> tuple[float, float, int] | None:
        """(median, MAD, samples) of the intervals between heartbeats, if any were seen."""
        samples = list(self.heartbeats)
        if not samples:
            return None
        median = statistics.median(samples)
        mad = statistics.median(abs(s - median) for s in samples)
        return median, mad, len(samples)


@dataclass(slots=True)
class _Attempts:
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


@dataclass(frozen=True, slots=True)
class _Close:
    """A stream close that no known constant explains, kept to spot values that recur."""

    value: float
    is_idle: bool
    stream_id: int
    label: str
    how: str
    session_id: int | None
    exchange_id: int | None


@dataclass(frozen=True, slots=True)
class _Suspect:
    """A client-closed stream at a round idle time, flagged only if the client reconnects."""

    stream_id: int
    closed_at: float
    text: str
    links: dict[str, Any]
    due: float


@dataclass(slots=True)
class _Truncation:
    stream: _Stream
    calls: list[tuple[int, str, str]]
    closed_at: float
    reason: str
    due: float


# --- The monitor ------------------------------------------------------------------------------


class HealthMonitor:
    """Feed it observations in time order (with ticks); it returns the flags each one raised."""

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        self.now = 0.0
        self._out: list[Flag] = []
        self._fired: set[tuple[Any, ...]] = set()
        self._sessions: dict[int, _Session] = {}
        self._session_keys: dict[str, int] = {}
        self._exchanges: dict[int, _Exchange] = {}
        self._streams: dict[int, _Stream] = {}
        self._calls: dict[tuple[int, str, str], _Call] = {}
        self._progress: dict[tuple[int, str, str], tuple[int, str, str]] = {}
        self._attempts: dict[tuple[str, ...], _Attempts] = {}
        self._truncations: list[_Truncation] = []
        self._recoveries: dict[int, tuple[float, tuple[str, str], int | None]] = {}
        self._reinitialized: dict[tuple[str, str], float] = {}
        self._closes: deque[_Close] = deque(maxlen=500)
        self._idle_suspects: dict[tuple[str, ...], _Suspect] = {}
        self._challenged: set[str] = set()
        self._mcp_paths: set[tuple[str, str]] = set()
        self._lanes = 0
        self._handlers = {
            "session": self._on_session, "exchange": self._on_exchange,
            "response": self._on_response, "stream-open": self._on_stream_open,
            "chunk": self._on_chunk, "sse": self._on_sse, "stream-close": self._on_stream_close,
            "exchange-end": self._on_exchange_end, "message": self._on_message,
        }

    # Entry points ---------------------------------------------------------------------------

    def observe(self, observation: Observation) -> list[Flag]:
        self._out = []
        t = observation.t
        self.now = max(self.now, t)
        handler = self._handlers.get(observation.kind)
        if handler is not None:
            handler(t, observation.row)
        elif observation.kind == "tick":
            self._tick(self.now)
        return self._out

    def feed(self, observations: Iterable[Observation]) -> list[Flag]:
        """Every flag raised by a sequence of observations (tests, offline checks)."""
        out: list[Flag] = []
        for observation in observations:
            out += self.observe(observation)
        return out

    def finish(self, t: float) -> list[Flag]:
        """End of input: a last tick at `t`."""
        return self.observe(Observation("tick", t, {}))

    # Flags ----------------------------------------------------------------------------------

    def _flag(self, kind: str, subject: tuple[Any, ...], t: float, message: str, *,
              severity: str | None = None, session_id: int | None = None,
              stream_id: int | None = None, message_id: int | None = None,
              call_id: int | None = None, exchange_id: int | None = None,
              **details: Any) -> bool:
        key = (kind, *subject)
        if key in self._fired:
            return False
        self._fired.add(key)
        session = self._sessions.get(session_id) if session_id is not None else None
        kept = {k: v for k, v in details.items() if v is not None}
        # The subject names the finding the same way live and offline (ids are the capture's),
        # so `ssetap check` can tell a finding it shares with the live run.
        kept["subject"] = "/".join(str(part) for part in subject)
        self._out.append(Flag(
            kind=kind, severity=severity or FLAG_KINDS[kind], t=t, message=message,
            session_key=session.key if session else None, stream_id=stream_id,
            message_id=message_id, call_id=call_id, exchange_id=exchange_id,
            details=kept, session_id=session_id,
        ))
        return True

    # Sessions -------------------------------------------------------------------------------

    def _session(self, session_id: int | None) -> _Session | None:
        if session_id is None:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session(session_id)
        return session

    def _on_session(self, t: float, row: dict[str, Any]) -> None:
        session = self._session(row.get("id"))
        if session is None:
            return
        if row.get("key"):
            session.key = row["key"]
            self._session_keys[session.key] = session.id
        if row.get("transport"):
            session.transport = row["transport"]
        if row.get("client_addr") is not None or row.get("user_agent") is not None:
            host = str(row.get("client_addr") or "").rpartition(":")[0]
            session.client = (host, row.get("user_agent") or "")

    def _session_for_request(self, headers: dict[str, str], url: str) -> int | None:
        sid = headers.get("mcp-session-id")
        if sid:
            return self._session_keys.get("sid:" + sid)
        for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
            if name.lower() in _SESSION_PARAMS and value:
                return self._session_keys.get("legacy:" + value)
        return None

    # Exchanges ------------------------------------------------------------------------------

    def _on_exchange(self, t: float, row: dict[str, Any]) -> None:
        url = str(row.get("url") or "")
        parts = urlsplit(url)
        headers = _header_map(row.get("request_headers"))
        try:
            port = parts.port
        except ValueError:
            port = None
        scheme = parts.scheme or "http"
        host = (parts.hostname or "").lower()
        shown_port = port or (443 if scheme == "https" else 80)
        client_host = str(row.get("client_addr") or "").rpartition(":")[0]
        ex = _Exchange(
            id=row["id"], method=str(row.get("method") or ""),
            path=str(row.get("path") or parts.path or "/"), url=url,
            server=f"{scheme}://{host}:{shown_port}", host=host, port=shown_port, scheme=scheme,
            client=(client_host, headers.get("user-agent", "")), started_at=t,
            headers=headers, mcp=bool(row.get("mcp")),
        )
        ex.session_id = self._session_for_request(headers, url)
        self._exchanges[ex.id] = ex
        session = self._sessions.get(ex.session_id or -1)
        if ex.method == "DELETE" and session is not None:
            session.ending = True
        if ex.method == "GET" and "text/event-stream" in headers.get("accept", ""):
            self._stream_attempt(t, ex)

    def _on_response(self, t: float, row: dict[str, Any]) -> None:
        ex = self._exchanges.get(row.get("id", -1))
        if ex is None:
            return
        status = row.get("status")
        ex.status = status if isinstance(status, int) else None
        if row.get("session_id") is not None:
            ex.session_id = row["session_id"]
        if row.get("mcp"):
            ex.mcp = True
        ctype = str(row.get("response_content_type") or "").split(";")[0].strip().lower()
        ex.sse = ctype == "text/event-stream"
        headers = _header_map(row.get("response_headers"))
        session = self._session(ex.session_id)
        ok = ex.status is not None and 200 <= ex.status < 300
        if session is not None and ok and self._names_session(ex):
            session.ok += 1
            session.last_ok_at = t
            if ex.method == "DELETE":
                session.deleted = True
        if ex.status == 401:
            self._challenged.add(ex.server)
        if ex.status is not None and ex.status >= 400 and ex.method == "POST":
            for key in ex.calls:
                call = self._calls.get(key)
                if call is not None:
                    call.rejected = ex.status
        if ex.session_id is not None:
            self._check_url(t, ex)
        if ex.mcp:
            self._check_response_security(t, ex, headers, ok)
            if ex.sse and ok:
                self._check_stream_headers(t, ex, headers)

    @staticmethod
    def _names_session(ex: _Exchange) -> bool:
        if "mcp-session-id" in ex.headers:
            return True
        query = urlsplit(ex.url).query
        return any(n.lower() in _SESSION_PARAMS for n, _ in parse_qsl(query))

    def _on_exchange_end(self, t: float, row: dict[str, Any]) -> None:
        ex = self._exchanges.pop(row.get("id", -1), None)
        if ex is None:
            return
        if row.get("session_id") is not None:
            ex.session_id = row["session_id"]
        if row.get("mcp"):
            ex.mcp = True
        if ex.valid_rpc or ex.mcp:
            self._mcp_paths.add((ex.server, ex.path))
        expected_rpc = ex.valid_rpc or "mcp-session-id" in ex.headers \
            or "mcp-protocol-version" in ex.headers or (ex.server, ex.path) in self._mcp_paths
        answered_ok = ex.status is not None and 200 <= ex.status < 300
        for at, message in ex.invalid if expected_rpc else ():
            if message.get("direction") == C2S or answered_ok:  # error pages may be any JSON
                self._invalid(at, message, ex)
        self._check_session_not_found(t, ex, row)
        self._check_url(t, ex)  # if the response did not already (its session came late)
        error = row.get("error")
        if ex.status is None or error:
            # The carrying connection failed before (or while) answering.
            for key in ex.calls:
                call = self._calls.get(key)
                if call is not None and call.carrier_closed_at is None:
                    call.carrier_closed_at = t
                    call.carrier_close = f"the HTTP exchange failed: {error or 'no response'}"
        if ex.attempt_key is not None:
            self._attempt_ended(t, ex, error)

    # Security -------------------------------------------------------------------------------

    def _is_remote(self, ex: _Exchange) -> bool:
        remote = self.config.remote_hosts
        if ex.host in remote or f"{ex.host}:{ex.port}" in remote:
            return True
        return not is_loopback_host(ex.host)

    def _check_url(self, t: float, ex: _Exchange) -> None:
        if not (ex.mcp or (ex.server, ex.path) in self._mcp_paths):
            return
        query = urlsplit(ex.url).query
        names = sorted({n for n, v in parse_qsl(query, keep_blank_values=True)
                        if v and n.lower() not in _SESSION_PARAMS and _TOKEN_PARAM.match(n)})
        if names:
            listed = ", ".join(names)
            self._flag(
                TOKEN_IN_URL, (ex.server, ex.path, tuple(names)), t,
                f"{ex.method} {ex.path} on {ex.server} carries a credential in its URL query "
                f"({listed}); URLs end up in proxy and server logs and browser history, and MCP "
                "forbids tokens in the query string: send them in the Authorization header",
                session_id=ex.session_id, exchange_id=ex.id, params=names,
            )
        if ex.scheme == "http" and self._is_remote(ex):
            self._flag(
                PLAINTEXT_REMOTE, (ex.server,), t,
                f"MCP traffic to {ex.server} travels over plain HTTP to a remote host; "
                "anyone on the path can read and inject tokens, session ids and tool results. "
                "Usual cause: a missing TLS terminator or an http:// URL in the client config",
                session_id=ex.session_id, exchange_id=ex.id, server=ex.server,
            )

    def _check_response_security(self, t: float, ex: _Exchange, headers: dict[str, str],
                                 ok: bool) -> None:
        allow = headers.get("access-control-allow-origin", "").strip()
        origin = ex.headers.get("origin")
        if allow == "*" or (allow and origin and allow == origin and _foreign_origin(origin)):
            credentials = headers.get("access-control-allow-credentials", "").lower() == "true"
            how = "'*'" if allow == "*" else f"the request's own Origin ({allow})"
            self._flag(
                WILDCARD_CORS, (ex.server,), t,
                f"{ex.server} answers {ex.method} {ex.path} with Access-Control-Allow-Origin: "
                f"{how}{' and Allow-Credentials: true' if credentials else ''}: any web page "
                "can call this MCP server from a browser (DNS-rebinding and CSRF risk). "
                "Usual cause: a permissive CORS middleware default",
                session_id=ex.session_id, exchange_id=ex.id, allow_origin=allow,
                credentials=credentials,
            )
        if ok and origin and _foreign_origin(origin) and not self._is_remote(ex):
            self._flag(
                ORIGIN_ACCEPTED, (ex.server,), t,
                f"loopback server {ex.server} answered {ex.status} to {ex.method} {ex.path} "
                f"from foreign Origin {origin!r}; MCP servers must reject it with 403, or a web "
                "page can drive the local server (DNS rebinding). Usual cause: no Origin "
                "validation (see the SDKs' DNS-rebinding protection)",
                session_id=ex.session_id, exchange_id=ex.id, origin=origin,
            )
        if ok and ex.method == "POST" and "authorization" not in ex.headers \
                and self._is_remote(ex) and ex.server not in self._challenged:
            self._flag(
                MISSING_AUTH, (ex.server,), t,
                f"remote server {ex.server} answered {ex.status} to an MCP request without any "
                "Authorization header and has sent no 401 challenge; anyone who can reach it "
                "can use its tools. Usual cause: authentication left off a public endpoint",
                session_id=ex.session_id, exchange_id=ex.id,
            )

    def _check_stream_headers(self, t: float, ex: _Exchange, headers: dict[str, str]) -> None:
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding and encoding != "identity":
            self._flag(
                BUFFERED_STREAM, ("encoding", ex.server, ex.path), t,
                f"{ex.method} {ex.path} answers text/event-stream with Content-Encoding: "
                f"{encoding}; compressors hold events back until their buffer fills. Usual "
                "cause: a gzip middleware or proxy compressing event streams",
                session_id=ex.session_id, exchange_id=ex.id, stream_id=ex.stream_id,
                content_encoding=encoding,
            )
        via = f"{headers.get('server', '')} {headers.get('via', '')}".lower()
        accel = headers.get("x-accel-buffering", "").strip().lower()
        if any(p in via for p in _BUFFERING_PROXIES) and accel != "no":
            self._flag(
                BUFFERED_STREAM, ("proxy", ex.server, ex.path), t,
                f"{ex.method} {ex.path} streams through nginx (Server/Via) without "
                "X-Accel-Buffering: no; nginx buffers proxied responses by default, so events "
                "and heartbeats can arrive in bursts. Fix: proxy_buffering off or the header",
                session_id=ex.session_id, exchange_id=ex.id, stream_id=ex.stream_id,
            )

    # Streams --------------------------------------------------------------------------------

    def _new_lane(self) -> int:
        self._lanes += 1
        return self._lanes

    def _on_stream_open(self, t: float, row: dict[str, Any]) -> None:
        ex = self._exchanges.get(row.get("exchange_id", -1))
        session_id = row.get("session_id")
        if session_id is None and ex is not None:
            session_id = ex.session_id
        sent = row.get("last_event_id_sent")
        lane = 0
        session = self._session(session_id)
        if sent and session is not None and sent in session.event_ids:
            lane = session.event_ids[sent][0]
        stream = _Stream(
            id=row["id"], exchange_id=row.get("exchange_id"), session_id=session_id,
            method=str(row.get("method") or (ex.method if ex else "GET")),
            path=ex.path if ex else "?", role=str(row.get("role") or ""), opened_at=t,
            last_event_id_sent=sent, lane=lane or self._new_lane(),
        )
        self._streams[stream.id] = stream
        if lane and session is not None:
            session.resumed[lane] = t
        if ex is not None:
            ex.stream_id = stream.id
            for key in ex.calls:
                call = self._calls.get(key)
                if call is not None:
                    call.stream_id = stream.id

    def _stream_session(self, stream: _Stream, row: dict[str, Any]) -> _Session | None:
        if stream.session_id is None and row.get("session_id") is not None:
            stream.session_id = row["session_id"]
        return self._session(stream.session_id)

    def _on_chunk(self, t: float, row: dict[str, Any]) -> None:
        stream = self._streams.get(row.get("stream_id", -1))
        if stream is None:
            return
        self._stream_session(stream, row)
        previous = stream.last_byte if stream.last_byte is not None else stream.opened_at
        silence = t - previous
        if stream.last_byte is not None:
            stream.gaps.append(silence)
        # A silence that ended before any tick saw it (sparse ticks) is still a silence.
        self._check_heartbeat(stream, t, silence)
        if stream.burst_started is not None and t - stream.burst_last <= self.config.burst_window:
            stream.burst_last = t
        else:
            self._end_burst(stream)
            stream.burst_started = stream.burst_last = t
            stream.burst_silence = silence
            stream.burst_items = stream.burst_heartbeats = stream.burst_progress = 0
            stream.burst_explained = False
        stream.last_byte = t

    def _heartbeat(self, stream: _Stream, t: float) -> None:
        since = stream.last_heartbeat if stream.last_heartbeat is not None else stream.opened_at
        if t - since >= 0.05:  # bunched heartbeats say nothing about the cadence
            stream.heartbeats.append(t - since)
        stream.last_heartbeat = t
        if self._in_burst(stream, t):
            stream.burst_heartbeats += 1

    def _on_sse(self, t: float, row: dict[str, Any]) -> None:
        stream = self._streams.get(row.get("stream_id", -1))
        if stream is None:
            return
        session = self._stream_session(stream, row)
        kind = row.get("kind")
        if kind in ("event", "comment") and self._in_burst(stream, t):
            stream.burst_items += 1
        if isinstance(row.get("retry"), int):
            stream.retry_ms = row["retry"]
        if kind == "comment" or kind == "control" or (kind == "event" and row.get("data") == ""):
            self._heartbeat(stream, t)
        elif kind == "incomplete":
            stream.incomplete = True
        if kind == "event" and row.get("type") == "endpoint" and session is not None:
            session.fresh_legacy = True
        event_id = row.get("event_id")
        if kind in ("event", "control") and isinstance(event_id, str):
            if event_id:
                stream.last_id = event_id
                if session is not None:
                    self._event_id(t, stream, session, event_id, row)
            else:
                stream.last_id = None

    def _event_id(self, t: float, stream: _Stream, session: _Session, event_id: str,
                  row: dict[str, Any]) -> None:
        """Event ids are cursors per stream, unique in the session (mcp-wire.md 2.6)."""
        seen = session.event_ids.get(event_id)
        lane_ids = session.lane_ids.setdefault(stream.lane, [])
        if seen is None:
            if stream.role == "resume" and stream.last_event_id_sent:
                self._check_gap(t, stream, session, lane_ids, event_id)
            session.event_ids[event_id] = (stream.lane, len(lane_ids))
            lane_ids.append(event_id)
            return
        lane, position = seen
        if lane != stream.lane:
            self._flag(
                RESUME_GAP, ("foreign", stream.id), t,
                f"{stream.label()} delivered event id {event_id!r}, which had already gone out "
                f"on another stream of the session; a server must replay only the resumed "
                "stream's own events. Usual cause: an event store keyed by session, not stream",
                session_id=session.id, stream_id=stream.id, event_id=event_id,
            )
        elif stream.role == "resume":
            cursor = session.event_ids.get(stream.last_event_id_sent or "")
            if cursor is not None and position <= cursor[1]:
                self._flag(
                    RESUME_GAP, ("replayed", stream.id), t,
                    f"{stream.label()} resumed after {stream.last_event_id_sent!r} but replayed "
                    f"{event_id!r}, delivered before that cursor; the client sees it twice. "
                    "Usual cause: an event store that replays from the wrong position",
                    session_id=session.id, stream_id=stream.id, event_id=event_id,
                )

    def _check_gap(self, t: float, stream: _Stream, session: _Session, lane_ids: list[str],
                   event_id: str) -> None:
        """After a resume, ids with a numeric suffix that counted by one must go on doing so."""
        if not lane_ids or lane_ids[-1] != stream.last_event_id_sent:
            return
        numbers = [_suffix(i) for i in lane_ids[-4:]]
        current = _suffix(event_id)
        if current is None or any(n is None for n in numbers) or len(numbers) < 2:
            return
        steps = [b - a for a, b in pairwise(numbers)]  # type: ignore[operator]
        last = numbers[-1]
        assert last is not None
        if all(s == 1 for s in steps) and current > last + 1:
            missing = current - last - 1
            self._flag(
                RESUME_GAP, ("gap", stream.id), t,
                f"{stream.label()} resumed after {stream.last_event_id_sent!r} with "
                f"{event_id!r}: a gap of {missing} event{'s' if missing != 1 else ''} that were "
                "never replayed. Usual cause: an event store that dropped or expired them",
                session_id=session.id, stream_id=stream.id, missing=missing,
            )

    def _check_heartbeat(self, stream: _Stream, t: float, silence: float) -> None:
        cfg = self.config
        cadence = stream.cadence()
        if cadence is not None:
            median, mad, count = cadence
            limit = max(cfg.heartbeat_factor * median, median + 4 * mad,
                        median + cfg.heartbeat_slack)
        else:
            median, count = cfg.heartbeat_interval, 0
            if median <= 0:
                return
            limit = max(cfg.heartbeat_factor * median, median + cfg.heartbeat_slack)
        if silence <= limit:
            return
        lived = t - stream.opened_at
        if count:
            text = (f"no bytes for {_secs(silence)} on {stream.label()}; this stream's heartbeat "
                    f"cadence is {_secs(median)} (from {count} interval"
                    f"{'s' if count != 1 else ''}), so more than {_secs(limit)} of silence is "
                    "not expected. Usual cause: the server's keep-alive stopped (stalled "
                    "event loop, dead worker) or a proxy is holding the stream")
        else:
            nearest = [c for c in cfg.idle_timeouts if c > silence]
            risk = f"; the next common idle timeout is {_secs(nearest[0])}" if nearest else ""
            text = (f"no bytes for {_secs(silence)} on {stream.label()} and no heartbeat in its "
                    f"{_secs(lived)} so far (expected one every {_secs(median)}): no heartbeat, "
                    f"at risk of idle timeouts{risk}. Usual cause: the server sends no "
                    "keep-alive comments (TypeScript SDK before 1.30, custom servers)")
        self._flag(HEARTBEAT_MISSING, (stream.id,), t, text, session_id=stream.session_id,
                   stream_id=stream.id, exchange_id=stream.exchange_id,
                   silence=round(silence, 3), cadence=round(median, 3) if count else None,
                   limit=round(limit, 3))

    def _in_burst(self, stream: _Stream, t: float) -> bool:
        started = stream.burst_started
        return started is not None and t - stream.burst_last <= self.config.burst_window

    def _end_burst(self, stream: _Stream) -> None:
        if stream.burst_started is None:
            return
        cfg = self.config
        started, silence = stream.burst_started, stream.burst_silence
        stream.burst_started = None
        if stream.burst_items < cfg.burst_events:
            return
        threshold = cfg.burst_gap
        if len(stream.gaps) >= 3:
            threshold = max(threshold, cfg.burst_gap_factor * statistics.median(stream.gaps))
        if silence < threshold:
            return
        # A response to a request sent during the silence explains it (the tool was working),
        # unless held-back heartbeats or progress steps arrived together with it.
        if stream.burst_explained and stream.burst_heartbeats < 2 and stream.burst_progress < 2:
            return
        extra = []
        if stream.burst_heartbeats >= 2:
            extra.append(f"{stream.burst_heartbeats} heartbeats among them")
        if stream.burst_progress >= 2:
            extra.append(f"{stream.burst_progress} progress steps among them")
        self._flag(
            BUFFERED_STREAM, ("burst", stream.id), started,
            f"{stream.burst_items} SSE events arrived together on {stream.label()} after "
            f"{_secs(silence)} of silence{' (' + ', '.join(extra) + ')' if extra else ''}; "
            "events were held back and released in a burst. Usual cause: a buffering proxy "
            "(nginx proxy_buffering, X-Accel-Buffering missing) or compression middleware",
            session_id=stream.session_id, stream_id=stream.id, exchange_id=stream.exchange_id,
            events=stream.burst_items, silence=round(silence, 3),
        )

    def _on_stream_close(self, t: float, row: dict[str, Any]) -> None:
        stream = self._streams.pop(row.get("id", -1), None)
        if stream is None:
            return
        session = self._stream_session(stream, row)
        self._end_burst(stream)
        reason = str(row.get("close_reason") or "end")
        if isinstance(row.get("retry_ms"), int):
            stream.retry_ms = row["retry_ms"]
        ex = self._exchanges.get(stream.exchange_id or -1)
        if ex is not None:
            ex.stream_reason = reason
            ex.stream_retry_ms = stream.retry_ms
        if reason == "recorder-stop" or (session is not None and session.ending):
            return  # the recorder or the client ended it: nothing the network did
        how = {"client-disconnect": "by the client", "end": "normally by the server",
               "error": "with an error"}.get(reason, f"with an error ({reason})")
        if stream.incomplete and reason != "client-disconnect":
            self._flag(
                STREAM_TRUNCATED, (stream.id,), t,
                f"{stream.label()} ended mid-event (closed {how}): the bytes of an unfinished "
                "event were cut off and lost. Usual cause: the server or a proxy dropped the "
                "connection while writing",
                session_id=stream.session_id, stream_id=stream.id, exchange_id=stream.exchange_id,
            )
        unanswered = self._carried(stream, session, t, how)
        if unanswered and reason != "client-disconnect":
            if stream.last_id and stream.role in ("post", "resume", "get"):
                retry = (stream.retry_ms or 0) / 1000.0
                self._truncations.append(_Truncation(stream, unanswered, t, how,
                                                     t + retry + self.config.resume_grace))
            else:
                self._truncated_early(stream, unanswered, t, how)
        if stream.last_id and session is not None and reason in ("end", "error") \
                and (stream.role != "post" or unanswered):
            session.pending_break = _Break(stream.id, stream.last_id, t)
        self._check_idle_close(stream, t, reason, how, unanswered)

    def _carried(self, stream: _Stream, session: _Session | None, t: float,
                 how: str) -> list[tuple[int, str, str]]:
        """Requests whose answers this stream was to carry and never did."""
        if stream.role == "post":
            ex = self._exchanges.get(stream.exchange_id or -1)
            keys = list(ex.calls) if ex is not None else [
                k for k, c in self._calls.items() if c.stream_id == stream.id]
        elif stream.role == "legacy" and session is not None and session.transport == "sse":
            keys = [k for k, c in self._calls.items()
                    if c.session == session.id and c.direction == C2S]
        else:
            keys = []
        open_keys = []
        for key in keys:
            call = self._calls.get(key)
            if call is None or call.cancelled_at is not None:
                continue
            open_keys.append(key)
            if call.carrier_closed_at is None:
                call.carrier_closed_at = t
                call.carrier_close = f"{stream.label()} closed {how}"
        return open_keys

    def _truncated_early(self, stream: _Stream, keys: list[tuple[int, str, str]], t: float,
                         how: str) -> None:
        calls = [self._calls[k] for k in keys if k in self._calls]
        if not calls:
            return
        first = calls[0]
        more = f" and {len(calls) - 1} more" if len(calls) > 1 else ""
        resumable = " and no resumption delivered it" if stream.last_id else \
            " and it issued no event ids, so it cannot be resumed"
        self._flag(
            STREAM_TRUNCATED, (stream.id,), t,
            f"{stream.label()} closed {how} {_secs(t - stream.opened_at)} after it opened, "
            f"before the response to {first.label}{more}{resumable}. Usual cause: a proxy or "
            "server timeout, a crash, or a deploy cutting the connection",
            session_id=stream.session_id, stream_id=stream.id, exchange_id=stream.exchange_id,
            call_id=first.call_id, pending=len(calls),
        )

    def _check_idle_close(self, stream: _Stream, t: float, reason: str, how: str,
                          unanswered: list[tuple[int, str, str]]) -> None:
        cfg = self.config
        if stream.role == "post" and not unanswered:
            return  # a POST stream ends once its response is out: that is the protocol
        if reason == "end" and stream.retry_ms is not None:
            return  # the server asked for a reconnect delay first: a deliberate close (polling)
        idle = t - (stream.last_byte if stream.last_byte is not None else stream.opened_at)
        age = t - stream.opened_at
        cadence = stream.cadence()
        idle_counts = cadence is None or idle >= 1.5 * cadence[0]
        age_counts = reason != "client-disconnect"
        found: tuple[str, float, float, str] | None = None
        for constant in cfg.idle_timeouts:
            tolerance = min(cfg.idle_tolerance * constant, cfg.idle_tolerance_max)
            who = _timeout_cause(constant) or f"a configured {_secs(constant)} timeout"
            if idle_counts and abs(idle - constant) <= tolerance:
                found = ("after {} of silence", idle, constant, who)
                break
            if age_counts and abs(age - constant) <= tolerance:
                found = ("{} after it opened", age, constant, who)
                break
        if found is not None:
            measure, value, constant, who = found
            text = (f"{stream.label()} was closed {how} {measure.format(_secs(value))} "
                    f"(lived {_secs(age)}, idle {_secs(idle)}); {_secs(constant)} is a common "
                    f"deadline: {who}")
            links: dict[str, Any] = {
                "session_id": stream.session_id, "stream_id": stream.id,
                "exchange_id": stream.exchange_id, "idle": round(idle, 3),
                "age": round(age, 3), "constant": constant}
            ex = self._exchanges.get(stream.exchange_id or -1)
            if reason == "client-disconnect" and stream.role != "post" and ex is not None:
                # A client closing its own stream is usually ending its session; it was a
                # timeout only if the client then reconnects.
                self._idle_suspects[(*ex.client, ex.server, ex.path)] = _Suspect(
                    stream.id, t, text, links, t + cfg.storm_short_lived)
                return
            self._flag(IDLE_TIMEOUT_CLOSE, (stream.id,), t, text + _IDLE_CAUSE, **links)
            return
        # A value that recurs in the capture: network faults scatter, deadlines do not.
        self._recurring_close(stream, t, idle if idle_counts else None,
                              age if age_counts else None, how)

    def _recurring_close(self, stream: _Stream, t: float, idle: float | None,
                         age: float | None, how: str) -> None:
        cfg = self.config
        for value, is_idle in ((idle, True), (age, False)):
            if value is None or value < cfg.idle_recur_min:
                continue
            tolerance = min(max(cfg.idle_tolerance * value, 0.1), cfg.idle_tolerance_max)
            close = _Close(value, is_idle, stream.id, stream.label(), how, stream.session_id,
                           stream.exchange_id)
            matches = [c for c in self._closes
                       if c.is_idle == is_idle and abs(c.value - value) <= tolerance]
            self._closes.append(close)
            if len(matches) + 1 < cfg.idle_recur_count:
                continue
            measure = "after {} of silence" if is_idle else "{} after it opened"
            for other in [*matches, close]:
                self._flag(
                    IDLE_TIMEOUT_CLOSE, (other.stream_id,), t,
                    f"{other.label} was closed {other.how} {measure.format(_secs(other.value))}"
                    f"; {len(matches) + 1} streams in this capture closed at "
                    f"{_secs(value)} ± {_secs(tolerance)}: a value that recurs is a deadline, "
                    "not a network fault. Usual cause: an idle or absolute timeout in a proxy, "
                    "load balancer or client",
                    session_id=other.session_id, stream_id=other.stream_id,
                    exchange_id=other.exchange_id, value=round(other.value, 3),
                    recurring=len(matches) + 1,
                )
            return

    # Reconnects -----------------------------------------------------------------------------

    def _confirm_idle_suspect(self, t: float, ex: _Exchange) -> None:
        suspect = self._idle_suspects.pop((*ex.client, ex.server, ex.path), None)
        if suspect is not None and t <= suspect.due:
            self._flag(IDLE_TIMEOUT_CLOSE, (suspect.stream_id,), suspect.closed_at,
                       f"{suspect.text}; the client reconnected {_secs(t - suspect.closed_at)} "
                       f"later, so it had not meant to end the stream{_IDLE_CAUSE}",
                       **suspect.links)

    def _stream_attempt(self, t: float, ex: _Exchange) -> None:
        # Per client and URL, and per session when the GET names one: a new session's first
        # GET is not a reconnect. Legacy reconnect loops get a new session each time, hence
        # the client and URL alone when no session is named.
        self._confirm_idle_suspect(t, ex)
        key = (ex.client[0], ex.client[1], ex.server, ex.path,
               ex.headers.get("mcp-session-id", ""))
        ex.attempt_key = key
        state = self._attempts.setdefault(key, _Attempts())
        if ex.session_id is not None:
            state.session_id = ex.session_id
        self._check_resume(t, ex)
        if state.open == 0 and state.last_end is not None:
            self._reconnect(t, ex, state, t - state.last_end)
        state.open += 1

    def _reconnect(self, t: float, ex: _Exchange, state: _Attempts, delay: float) -> None:
        cfg = self.config
        retry = (state.last_retry_ms or 0) / 1000.0
        failed = state.last_failed or (state.last_reason in ("end", "error")
                                       and state.last_lived < cfg.storm_short_lived)
        polite = (not state.last_failed and state.last_reason == "end" and retry > 0
                  and delay >= 0.9 * retry)
        if not failed or polite:
            state.delays.clear()
            return
        subject = (ex.client, ex.server, ex.path, ex.headers.get("mcp-session-id", ""))
        who = f"client {ex.client[0] or '?'} ({ex.client[1] or 'no user agent'})"
        target = f"GET {ex.path} on {ex.server}"
        session_id = ex.session_id or state.session_id
        if retry > 0 and delay < 0.9 * retry - 0.05:
            state.retry_violations += 1
            if state.retry_violations >= 2:
                self._flag(
                    RECONNECT_STORM, subject, t,
                    f"{who} reopened {target} {_secs(delay)} after the last attempt ended, "
                    f"though the server asked for retry: {state.last_retry_ms} ms; clients "
                    "must respect retry. Usual cause: a reconnect loop that ignores the SSE "
                    "retry field",
                    delay=round(delay, 3), retry_ms=state.last_retry_ms, session_id=session_id,
                    exchange_id=ex.id,
                )
        state.reconnects.append(t)
        while state.reconnects and state.reconnects[0] < t - cfg.storm_window:
            state.reconnects.popleft()
        if len(state.reconnects) >= cfg.storm_count:
            self._flag(
                RECONNECT_STORM, subject, t,
                f"{who} reopened {target} {len(state.reconnects)} times in "
                f"{_secs(min(cfg.storm_window, t - state.reconnects[0]))} after failed or "
                f"short-lived attempts (last delay {_secs(delay)}). Usual cause: a client that "
                "reconnects on every end of stream or 404/405 without backoff",
                count=len(state.reconnects), window=cfg.storm_window, session_id=session_id,
                exchange_id=ex.id,
            )
        state.delays.append(delay)
        run = state.delays[-cfg.storm_no_backoff:]
        if len(run) >= cfg.storm_no_backoff and all(
                b <= a * 1.1 + 0.05 for a, b in pairwise(run)):
            shown = ", ".join(f"{d:.2f}" for d in run)
            self._flag(
                RECONNECT_STORM, subject, t,
                f"{who} reopened {target} {len(run)} times in a row with no backoff (delays "
                f"{shown} s, never growing). Usual cause: a fixed-delay reconnect loop; use "
                "exponential backoff with a cap and respect retry",
                delays=[round(d, 3) for d in run], session_id=session_id, exchange_id=ex.id,
            )

    def _attempt_ended(self, t: float, ex: _Exchange, error: Any) -> None:
        assert ex.attempt_key is not None
        state = self._attempts.get(ex.attempt_key)
        if state is None:
            return
        state.open = max(state.open - 1, 0)
        ok = ex.status is not None and 200 <= ex.status < 300 and ex.sse
        reason = ex.stream_reason or ("error" if error else "end")
        session = self._sessions.get(ex.session_id or -1)
        if ok and (reason in ("recorder-stop", "client-disconnect")
                   or (session is not None and session.ending)):
            state.last_end = None  # the client or the recorder ended it: not a reconnect cause
            return
        state.last_end = t
        state.last_failed = not ok
        state.last_lived = t - ex.started_at
        state.last_reason = reason
        state.last_retry_ms = ex.stream_retry_ms
        if ex.session_id is not None:
            state.session_id = ex.session_id

    def _check_resume(self, t: float, ex: _Exchange) -> None:
        session = self._session(ex.session_id)
        if session is None or session.pending_break is None:
            return
        brk = session.pending_break
        session.pending_break = None
        sent = ex.headers.get("last-event-id")
        if not sent:
            self._flag(
                RESUME_GAP, ("no-cursor", ex.id), t,
                f"GET {ex.path} reconnected {_secs(t - brk.at)} after stream #{brk.stream_id} "
                f"ended, without Last-Event-ID, though that stream had issued event ids (last "
                f"{brk.last_id!r}); whatever was sent in between is lost. Usual cause: a client "
                "that does not keep the SSE cursor across reconnects",
                session_id=session.id, exchange_id=ex.id, stream_id=brk.stream_id,
                last_event_id=brk.last_id,
            )
        elif sent not in session.event_ids:
            self._flag(
                RESUME_GAP, ("unknown-cursor", ex.id), t,
                f"GET {ex.path} resumed with Last-Event-ID {sent!r}, an id this session never "
                f"issued (stream #{brk.stream_id} last sent {brk.last_id!r}). Usual cause: a "
                "client that kept a stale or foreign cursor",
                session_id=session.id, exchange_id=ex.id, stream_id=brk.stream_id,
            )

    # Messages -------------------------------------------------------------------------------

    def _on_message(self, t: float, row: dict[str, Any]) -> None:
        session_id = row.get("session_id")
        direction = str(row.get("direction") or C2S)
        kind = row.get("kind")
        ex = self._exchanges.get(row.get("exchange_id", -1))
        if ex is not None and session_id is not None and ex.session_id is None:
            ex.session_id = session_id
        stream = self._streams.get(row.get("stream_id", -1)) if row.get("stream_id") else None
        if kind == "invalid" or row.get("problem"):
            if stream is not None:
                if self._speaks_mcp(stream, ex):
                    self._invalid(t, row, ex)
            elif ex is None:
                self._invalid(t, row, ex)
            else:
                ex.invalid.append((t, row))  # judged at the end, when its HTTP answer is known
            if kind == "invalid":
                return
        if ex is not None:
            ex.valid_rpc = True
        if stream is not None:
            stream.valid_rpc = True
        session = self._session(session_id)
        if session is None:
            return
        if kind == "request":
            self._request(t, row, session, direction, ex, stream)
        elif kind == "notification":
            self._notification(t, row, session, direction, stream)
        elif kind in ("result", "error"):
            self._response(t, row, session, direction, ex, stream)

    def _speaks_mcp(self, stream: _Stream, ex: _Exchange | None) -> bool:
        """Whether an SSE stream is known to carry MCP (any SSE stream passes the proxy)."""
        session = self._sessions.get(stream.session_id or -1)
        return (stream.valid_rpc or stream.role in ("post", "resume")
                or (session is not None and session.key.startswith(("sid:", "legacy")))
                or (ex is not None and (ex.server, ex.path) in self._mcp_paths))

    def _invalid(self, t: float, row: dict[str, Any], ex: _Exchange | None) -> None:
        problem = str(row.get("problem") or "not a JSON-RPC message")
        where = "SSE data" if row.get("stream_id") else (
            "a POST body" if row.get("direction") == C2S else "a JSON response body")
        place = f" of {ex.method} {ex.path}" if ex is not None else ""
        subject = (row.get("session_id"), row.get("direction"), problem.split(":")[0])
        self._flag(
            INVALID_MESSAGE, subject, t,
            f"{where}{place} is not valid JSON-RPC: {problem}. Usual cause: a client or server "
            "bug, or a proxy or middleware that rewrote the payload",
            session_id=row.get("session_id"), message_id=row.get("id"),
            stream_id=row.get("stream_id"), exchange_id=row.get("exchange_id"),
            problem=problem,
        )

    def _request(self, t: float, row: dict[str, Any], session: _Session, direction: str,
                 ex: _Exchange | None, stream: _Stream | None) -> None:
        method = str(row.get("method") or "")
        rpc_id = row.get("rpc_id")
        if rpc_id is None:
            return
        payload = _json(row.get("json"))
        params = payload.get("params") if isinstance(payload, dict) else None
        key = (session.id, direction, str(rpc_id))
        previous = self._calls.get(key)
        if previous is not None or (direction, str(rpc_id)) in session.answered:
            in_flight = previous is not None and previous.cancelled_at is None
            first_at = previous.sent_at if previous is not None else None
            state = "while the first was still in flight" if in_flight else \
                "after the first had completed"
            self._flag(
                DUPLICATE_ID, (session.id, direction, in_flight), t,
                f"{direction} request id {rpc_id} ({method}) was reused in session "
                f"#{session.id} {state}"
                f"{f' (sent {_secs(t - first_at)} earlier)' if first_at is not None else ''}; "
                "ids must be unique per sender and session, or answers get cross-wired. "
                "Usual cause: a client that restarts its counter or shares a session",
                severity="error" if in_flight else "warning", session_id=session.id,
                message_id=row.get("id"), call_id=row.get("call_id"),
                exchange_id=row.get("exchange_id"), stream_id=row.get("stream_id"),
                in_flight=in_flight,
            )
            if previous is not None:
                self._progress.pop((session.id, direction, previous.progress_token or ""), None)
        name = None
        token = None
        if isinstance(params, dict):
            if method in ("tools/call", "prompts/get") and isinstance(params.get("name"), str):
                name = params["name"]
            elif isinstance(params.get("uri"), str):
                name = params["uri"]
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                token = _id_key(meta["progressToken"])
        call = _Call(
            session=session.id, direction=direction, rpc_id=str(rpc_id), method=method,
            name=name, call_id=row.get("call_id"), message_id=row.get("id", 0),
            exchange_id=row.get("exchange_id"), sent_at=t,
            deadline=self.config.timeout_for(method), progress_token=token,
        )
        self._calls[key] = call
        if token is not None:
            self._progress[(session.id, direction, token)] = key
        if direction == C2S and ex is not None and row.get("stream_id") is None:
            ex.calls.append(key)
            call.stream_id = ex.stream_id
            if ex.status is not None and ex.status >= 400:
                call.rejected = ex.status  # e.g. the POST before a legacy GET fallback
        if stream is not None and method == "ping":
            self._heartbeat(stream, t)
        if direction == C2S:
            # 2026-07-28 has no handshake: `server/discover` (or nothing) starts a session, and
            # a v2 client over legacy SSE sends it on the new endpoint instead of initialize.
            if method in ("initialize", "server/discover"):
                session.initialized = True
                self._reinitialized[session.client] = t
                if ex is not None:
                    self._reinitialized[ex.client] = t
            elif method != "ping" and session.fresh_legacy and not session.initialized:
                self._reinit_missing(t, row, session, method)

    def _reinit_missing(self, t: float, row: dict[str, Any], session: _Session,
                        method: str) -> None:
        earlier = [s for s in self._sessions.values()
                   if s.id < session.id and s.transport == "sse" and s.client == session.client]
        before = f" after this client's session #{earlier[-1].id}" if earlier else ""
        self._flag(
            REINIT_MISSING, (session.id,), t,
            f"legacy session #{session.id} (a new endpoint from the GET stream{before}) received "
            f"{method} without any initialize; the server will reject it ('Received request "
            "before initialization was complete'). Usual cause: an EventSource that reconnected "
            "by itself and a client that switched to the new endpoint without re-initializing",
            session_id=session.id, message_id=row.get("id"), call_id=row.get("call_id"),
            exchange_id=row.get("exchange_id"),
        )

    def _notification(self, t: float, row: dict[str, Any], session: _Session, direction: str,
                      stream: _Stream | None) -> None:
        method = row.get("method")
        if method not in ("notifications/progress", "notifications/cancelled"):
            return
        payload = _json(row.get("json"))
        params = payload.get("params") if isinstance(payload, dict) else None
        if not isinstance(params, dict):
            return
        if method == "notifications/progress" and "progressToken" in params:
            key = self._progress.get((session.id, _opposite(direction),
                                      _id_key(params["progressToken"])))
            call = self._calls.get(key) if key is not None else None
            if call is not None:
                call.progress += 1
                call.last_progress_at = t
            if stream is not None and self._in_burst(stream, t):
                stream.burst_progress += 1
        elif method == "notifications/cancelled" and "requestId" in params:
            call = self._calls.get((session.id, direction, _id_key(params["requestId"])))
            if call is None or call.cancelled_at is not None:
                return
            call.cancelled_at = t
            reason = params.get("reason")
            call.cancel_reason = reason if isinstance(reason, str) else None
            waited = t - call.sent_at
            timed_out = (call.deadline > 0 and waited >= call.deadline) or (
                call.cancel_reason is not None and "time" in call.cancel_reason.lower())
            if timed_out:
                why = f" (reason {call.cancel_reason!r})" if call.cancel_reason else ""
                self._flag(
                    REQUEST_TIMEOUT, (session.id, call.direction, call.rpc_id, call.message_id),
                    t, f"{call.label} was cancelled by the client after {_secs(waited)} without "
                    f"a response{why}: a client-side timeout. Usual cause: a slow or hung tool, "
                    "or a response lost on the way",
                    session_id=session.id, call_id=call.call_id,
                    message_id=call.message_id, exchange_id=call.exchange_id,
                    waited=round(waited, 3), state="cancelled",
                )

    def _response(self, t: float, row: dict[str, Any], session: _Session, direction: str,
                  ex: _Exchange | None, stream: _Stream | None) -> None:
        rpc_id = row.get("rpc_id")
        kind = row.get("kind")
        payload = _json(row.get("json"))
        key = (session.id, _opposite(direction), str(rpc_id))
        call = self._calls.pop(key, None) if rpc_id is not None else None
        http_error = ex is not None and ex.status is not None and ex.status >= 400
        if kind == "error":
            error = payload.get("error") if isinstance(payload, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            if isinstance(text, str) and ex is not None:
                ex.error_texts.append(text)
            if call is not None:
                what = f"{call.label} failed after {_secs(t - call.sent_at)} with"
            elif http_error and ex is not None:
                what = f"the HTTP {ex.status} answer to {ex.method} {ex.path} carried"
            else:
                what = f"a response with id {rpc_id} carried"
            self._flag(
                ERROR_RESPONSE, (session.id, call.method if call else None, code), t,
                f"{what} JSON-RPC error {code} {text!r}",
                session_id=session.id, message_id=row.get("id"),
                call_id=call.call_id if call else row.get("call_id"),
                exchange_id=row.get("exchange_id"), stream_id=row.get("stream_id"),
                code=code, error_message=text,
            )
        if call is None:
            if rpc_id is None or rpc_id in ("null", '"server-error"') or http_error:
                return  # transport-level errors carry no usable id
            answered_at = session.answered.get((_opposite(direction), str(rpc_id)))
            if answered_at is not None:
                text = (f"a second response to {_opposite(direction)} request {rpc_id} arrived "
                        f"{_secs(t - answered_at)} after the first (duplicate delivery)")
            else:
                text = (f"a response with id {rpc_id} matches no request sent in session "
                        f"#{session.id}")
            where = f" on {stream.label()}" if stream is not None else ""
            self._flag(
                ORPHAN_RESPONSE, ("message", row.get("id")), t,
                f"{text}{where}; clients log 'unknown message ID' and may reconnect. Usual "
                "cause: a response routed to the wrong session or stream, or replayed twice",
                session_id=session.id, message_id=row.get("id"), stream_id=row.get("stream_id"),
                exchange_id=row.get("exchange_id"),
            )
            return
        session.answered[(call.direction, call.rpc_id)] = t
        if call.progress_token is not None:
            self._progress.pop((session.id, call.direction, call.progress_token), None)
        if call.cancelled_at is not None:
            self._flag(
                LATE_RESPONSE, (session.id, call.direction, call.rpc_id, call.message_id), t,
                f"{'an error' if kind == 'error' else 'a result'} for {call.label} arrived "
                f"{_secs(t - call.cancelled_at)} after the client cancelled it; a receiver "
                "should not answer a cancelled request and the client will drop it. Usual "
                "cause: a server that answers cancellations (python-sdk sends 'Request "
                "cancelled'), or a cancel racing the result",
                session_id=session.id, message_id=row.get("id"), call_id=call.call_id,
                stream_id=row.get("stream_id"), exchange_id=row.get("exchange_id"),
                after_cancel=round(t - call.cancelled_at, 3),
            )
        if stream is not None and stream.burst_started is not None and self._in_burst(stream, t) \
                and call.sent_at >= stream.burst_started - stream.burst_silence:
            stream.burst_explained = True  # the tool was working: the silence is explained

    # Sessions that vanished -----------------------------------------------------------------

    def _check_session_not_found(self, t: float, ex: _Exchange, row: dict[str, Any]) -> None:
        if ex.status not in (400, 404) or not self._names_session(ex):
            return
        if ex.status == 400:
            body = row.get("response_body")
            texts = " ".join(ex.error_texts).lower()
            if isinstance(body, bytes | str):
                texts += " " + (body.decode("utf-8", "replace") if isinstance(body, bytes)
                                else body).lower()
            if "session" not in texts:
                return
        session = self._session(ex.session_id)
        if session is None:
            return
        session.not_found += 1
        if session.not_found_at is None:
            session.not_found_at = t
        if session.deleted:
            return
        if session.ok > 0 and session.last_ok_at is not None:
            self._flag(
                SESSION_NOT_FOUND, (session.id,), t,
                f"{ex.method} {ex.path} got {ex.status} 'session not found' for session "
                f"#{session.id}, which had {session.ok} successful answer"
                f"{'s' if session.ok != 1 else ''} (the last {_secs(t - session.last_ok_at)} "
                "earlier). Usual cause: a load balancer without sticky sessions sending the "
                "request to another replica, a server restart, or the session expiring",
                session_id=session.id, exchange_id=ex.id, status=ex.status,
                earlier_successes=session.ok,
            )
            return
        if session.not_found >= 2:
            self._never_recovered(t, session, ex.client, ex.id)
        elif session.id not in self._recoveries:
            self._recoveries[session.id] = (t, ex.client, ex.id)

    def _never_recovered(self, t: float, session: _Session, client: tuple[str, str],
                         exchange_id: int | None) -> None:
        self._recoveries.pop(session.id, None)
        first = session.not_found_at if session.not_found_at is not None else t
        self._flag(
            SESSION_NOT_FOUND, (session.id,), t,
            f"session #{session.id} was answered 'session not found' {session.not_found} "
            f"time{'s' if session.not_found != 1 else ''} over {_secs(t - first)} and its client "
            f"({client[0] or '?'}) did not re-initialize; clients must start a new session "
            "with initialize after a 404. Usual cause: a client that ignores 404, or a server "
            "answering 400 instead of 404 so the client never knows to recover",
            session_id=session.id, exchange_id=exchange_id, count=session.not_found,
        )

    # Time -----------------------------------------------------------------------------------

    def _tick(self, t: float) -> None:
        cfg = self.config
        for stream in list(self._streams.values()):
            if stream.burst_started is not None and t - stream.burst_last > cfg.burst_window:
                self._end_burst(stream)
            last = stream.last_byte if stream.last_byte is not None else stream.opened_at
            self._check_heartbeat(stream, t, t - last)
        for call in list(self._calls.values()):
            if call.deadline > 0 and t - call.sent_at >= call.deadline:
                self._overdue(t, call)
        if self._truncations:
            due = [tr for tr in self._truncations if tr.due <= t]
            self._truncations = [tr for tr in self._truncations if tr.due > t]
            for tr in due:
                keys = [k for k in tr.calls if k in self._calls]
                session = self._sessions.get(tr.stream.session_id or -1)
                resumed_at = session.resumed.get(tr.stream.lane) if session is not None else None
                if resumed_at is not None and resumed_at >= tr.closed_at:
                    continue  # the client resumed that stream: its answer may still come there
                if keys:
                    self._truncated_early(tr.stream, keys, tr.closed_at, tr.reason)
        for key in [k for k, v in self._idle_suspects.items() if v.due < t]:
            del self._idle_suspects[key]
        for session_id, (at, client, exchange_id) in list(self._recoveries.items()):
            if t - at < cfg.session_recover_grace:
                continue
            del self._recoveries[session_id]
            if self._reinitialized.get(client, -1.0) >= at:
                continue
            session = self._sessions.get(session_id)
            if session is not None:
                self._never_recovered(t, session, client, exchange_id)

    def _overdue(self, t: float, call: _Call) -> None:
        subject = (call.session, call.direction, call.rpc_id, call.message_id)
        if (REQUEST_TIMEOUT, *subject) in self._fired:
            return
        if call.cancelled_at is not None or call.rejected is not None:
            return  # a client cancel is judged when it happens; a refused POST is not pending
        waited = t - call.sent_at
        severity = None
        if call.progress:
            since = t - (call.last_progress_at or call.sent_at)
            state, severity = "slow", "warning"
            text = (f"{call.label} has no response after {_secs(waited)} but received "
                    f"{call.progress} progress notification{'s' if call.progress != 1 else ''}, "
                    f"the last {_secs(since)} ago: slow, not hung. Usual cause: a long-running "
                    "tool; raise the deadline for it, or make the tool return sooner")
        elif call.carrier_closed_at is not None:
            state = "stream-closed"
            text = (f"{call.label} got no response within {_secs(call.deadline)}: "
                    f"{call.carrier_close} {_secs(call.carrier_closed_at - call.sent_at)} after "
                    "the request, and no response came on any other stream. Usual cause: a "
                    "proxy or server timeout cutting the stream, or a server that lost the request")
        else:
            state = "pending"
            text = (f"{call.label} got no response, progress or cancellation within "
                    f"{_secs(call.deadline)} (still pending {_secs(waited)} after the request). "
                    "Usual cause: a hung tool or handler, or a response lost on the way")
        self._flag(
            REQUEST_TIMEOUT, subject, t, text, severity=severity, session_id=call.session,
            call_id=call.call_id, message_id=call.message_id, exchange_id=call.exchange_id,
            stream_id=call.stream_id, waited=round(waited, 3), deadline=call.deadline,
            state=state, progress=call.progress or None,
        )


def _foreign_origin(origin: str) -> bool:
    """An Origin a loopback server should refuse: `null`, or a web origin not on loopback."""
    origin = origin.strip()
    if origin.lower() == "null":
        return True
    return not is_loopback_host(urlsplit(origin).hostname)


_SUFFIX = re.compile(r"(\d+)$")


def _suffix(event_id: str) -> int | None:
    match = _SUFFIX.search(event_id)
    return int(match.group(1)) if match else None
