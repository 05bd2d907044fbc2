"""MCP traffic as OpenTelemetry spans and histograms: pure values, no exporter, no clock.

Design notes (the rules this module keeps, after the OpenTelemetry MCP semantic conventions,
see shared/docs/observability.md):
- One span per call, named `{mcp.method.name} {target}` (target: the tool name of `tools/call`,
  the prompt name of `prompts/get`), kind CLIENT (a recorder in the middle describes the
  caller's side), status ERROR exactly when `error.type` is set (the JSON-RPC error code, or
  `tool_error` for a tool result with `isError: true`) with the error message as description.
- One span per session (`mcp.session`, INTERNAL) and per SSE stream (`mcp.sse_stream {role}`,
  INTERNAL, child of its session's span). Heartbeats (SSE comments), flags and capture gaps
  are span events on the stream's span (or the session's when they name no stream).
- Trace context: a call whose request carried `params._meta.traceparent` joins the client's
  trace under the client's span; every other call is a child of its session's span. Ids are
  derived from the session's key and start (stable: an export and a live push of the same
  session give the same ids; two recorders give different ones, their keys differ).
- Values only: the live pusher (recorder.otlp_push) and the file exporter
  (recorder.exporting.otlp) encode them, as protobuf and as OTLP/JSON.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

KIND_INTERNAL = 1
KIND_SERVER = 2
KIND_CLIENT = 3
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2

DURATION_METRIC = "mcp.client.operation.duration"
# The explicit bucket bounds the MCP conventions recommend for operation durations (seconds).
DURATION_BOUNDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
                   300.0)
# A stream span keeps at most this many heartbeat events (the count is an attribute).
MAX_HEARTBEAT_EVENTS = 200

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")

Attributes = tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    t: float
    attributes: Attributes = ()


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str | None
    name: str
    kind: int
    start: float
    end: float
    attributes: Attributes
    events: tuple[SpanEvent, ...] = ()
    status_code: int = STATUS_UNSET
    status_message: str = ""


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What a session span says, from a `sessions` row (stored or live)."""

    id: int
    key: str
    transport: str
    server: str
    started_at: float
    ended_at: float | None = None
    protocol_version: str | None = None
    client_name: str | None = None
    client_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SessionFacts:
        return cls(id=row["id"], key=row["key"], transport=row["transport"],
                   server=row["server"], started_at=row["started_at"],
                   ended_at=row.get("ended_at"), protocol_version=row.get("protocol_version"),
                   client_name=row.get("client_name"), client_version=row.get("client_version"),
                   server_name=row.get("server_name"), server_version=row.get("server_version"))


@dataclass(frozen=True, slots=True)
class CallFacts:
    """One call: its `calls` facts and the decoded request and response payloads."""

    call_id: int
    direction: str
    rpc_id: str | None  # the id's JSON encoding (recorder.model.RpcMessage.id_key)
    method: str
    sent_at: float
    answered_at: float | None
    outcome: str
    request: Any = None
    response: Any = None
    error_code: int | None = None
    error_message: str | None = None
    cancelled_at: float | None = None
    progress_count: int = 0


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """One SSE stream and what happened on it: heartbeats (comment times) and findings."""

    id: int
    role: str
    method: str
    opened_at: float
    closed_at: float | None
    close_reason: str | None
    events: int = 0
    comments: int = 0
    bytes: int = 0
    max_gap_ms: float | None = None
    heartbeats: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """A flag or a capture gap, as a span event."""

    name: str  # "ssetap.flag" or "ssetap.capture_gap"
    t: float
    attributes: Attributes = ()
    stream_id: int | None = None


@dataclass(slots=True)
class DurationHistogram:
    """`mcp.client.operation.duration` per (method, error.type), explicit buckets, seconds."""

    start: float | None = None
    end: float | None = None
    points: dict[tuple[str, str | None], list[float]] = field(default_factory=dict)

    def add(self, method: str, error_type: str | None, seconds: float, t: float) -> None:
        self.points.setdefault((method, error_type), []).append(seconds)
        self.start = t if self.start is None else min(self.start, t)
        self.end = t if self.end is None else max(self.end, t)

    def buckets(self, values: Iterable[float]) -> list[int]:
        counts = [0] * (len(DURATION_BOUNDS) + 1)
        for value in values:
            index = next((i for i, b in enumerate(DURATION_BOUNDS) if value <= b),
                         len(DURATION_BOUNDS))
            counts[index] += 1
        return counts


# --- Ids --------------------------------------------------------------------------------------


def _hex(*parts: object, length: int) -> str:
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:length]


def session_trace_id(session: SessionFacts) -> str:
    return _hex("trace", session.key, repr(session.started_at), length=32)


def session_span_id(session: SessionFacts) -> str:
    return _hex("session", session.key, repr(session.started_at), length=16)


def traceparent(request: Any) -> tuple[str, str] | None:
    """(trace id, parent span id) from a request's `params._meta.traceparent`, if valid."""
    params = request.get("params") if isinstance(request, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    value = meta.get("traceparent") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1), match.group(2)


# --- Spans ------------------------------------------------------------------------------------


def _session_id_value(key: str) -> str | None:
    """`mcp.session.id`: the (pseudonymised) session id, not for sessionless traffic."""
    prefix, sep, value = key.partition(":")
    return value if sep and prefix in ("sid", "legacy") else None


def _network(session: SessionFacts) -> list[tuple[str, Any]]:
    parts = urlsplit(session.server)
    out: list[tuple[str, Any]] = [("network.transport", "tcp"), ("network.protocol.name", "http")]
    if parts.hostname:
        out.append(("server.address", parts.hostname))
    port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme else None)
    if port:
        out.append(("server.port", port))
    return out


def _common(session: SessionFacts) -> list[tuple[str, Any]]:
    out = _network(session)
    if session.protocol_version:
        out.append(("mcp.protocol.version", session.protocol_version))
    session_id = _session_id_value(session.key)
    if session_id:
        out.append(("mcp.session.id", session_id))
    return out


def _params(payload: Any) -> dict[str, Any]:
    params = payload.get("params") if isinstance(payload, dict) else None
    return params if isinstance(params, dict) else {}


def error_type(call: CallFacts) -> tuple[str | None, str]:
    """(`error.type`, status description) of a call: the JSON-RPC error code, or
    `tool_error` for a tool result that says `isError`."""
    if call.outcome == "error" or call.error_code is not None:
        return (str(call.error_code) if call.error_code is not None else "_OTHER",
                call.error_message or "")
    result = call.response.get("result") if isinstance(call.response, dict) else None
    if isinstance(result, dict) and result.get("isError") is True:
        text = ""
        content = result.get("content")
        if isinstance(content, list) and content and isinstance(content[0], dict):
            text = str(content[0].get("text") or "")
        return "tool_error", text
    return None, ""


def call_span(call: CallFacts, session: SessionFacts, *, session_end: float | None = None,
              ) -> Span:
    """The span of one call (see the module's notes)."""
    params = _params(call.request)
    attributes: list[tuple[str, Any]] = [("mcp.method.name", call.method)]
    target = None
    if call.method == "tools/call" and isinstance(params.get("name"), str):
        target = params["name"]
        attributes += [("gen_ai.tool.name", target), ("gen_ai.operation.name", "execute_tool")]
    elif call.method == "prompts/get" and isinstance(params.get("name"), str):
        target = params["name"]
        attributes.append(("gen_ai.prompt.name", target))
    if isinstance(params.get("uri"), str) and call.method.startswith("resources/"):
        attributes.append(("mcp.resource.uri", params["uri"]))
    if call.rpc_id is not None and call.rpc_id != "null":
        rpc_id = call.rpc_id[1:-1] if call.rpc_id.startswith('"') else call.rpc_id
        attributes.append(("jsonrpc.request.id", rpc_id))
    err, description = error_type(call)
    if err is not None:
        attributes.append(("error.type", err))
        if call.error_code is not None:
            attributes.append(("rpc.response.status_code", str(call.error_code)))
    attributes += _common(session)
    attributes += [("ssetap.call.outcome", call.outcome), ("ssetap.call.direction", call.direction)]
    if call.progress_count:
        attributes.append(("ssetap.call.progress_count", call.progress_count))
    events: list[SpanEvent] = []
    if call.cancelled_at is not None:
        events.append(SpanEvent("mcp.cancelled", call.cancelled_at))
    end = call.answered_at
    if end is None:
        end = max(call.sent_at, call.cancelled_at or 0.0, session_end or 0.0)
    parent = traceparent(call.request)
    if parent is not None:
        trace_id, parent_id = parent
    else:
        trace_id, parent_id = session_trace_id(session), session_span_id(session)
    return Span(
        trace_id=trace_id, span_id=_hex("call", session.key, repr(session.started_at),
                                        call.call_id, length=16),
        parent_span_id=parent_id, name=f"{call.method} {target}" if target else call.method,
        kind=KIND_CLIENT, start=call.sent_at, end=end, attributes=tuple(attributes),
        events=tuple(events), status_code=STATUS_ERROR if err is not None else STATUS_UNSET,
        status_message=description if err is not None else "")


def _finding_event(finding: Finding) -> SpanEvent:
    return SpanEvent(finding.name, finding.t, finding.attributes)


def stream_span(stream: StreamFacts, session: SessionFacts, findings: Iterable[Finding] = (),
                *, end: float | None = None) -> Span:
    """The span of one SSE stream: heartbeats and its findings as events."""
    events = [SpanEvent("sse.heartbeat", t) for t in stream.heartbeats[:MAX_HEARTBEAT_EVENTS]]
    events += [_finding_event(f) for f in findings]
    events.sort(key=lambda e: e.t)
    attributes: list[tuple[str, Any]] = [
        ("ssetap.stream.role", stream.role), ("http.request.method", stream.method),
        ("ssetap.stream.events", stream.events), ("ssetap.stream.heartbeats", stream.comments),
        ("ssetap.stream.bytes", stream.bytes)]
    if stream.max_gap_ms is not None:
        attributes.append(("ssetap.stream.max_gap_ms", float(stream.max_gap_ms)))
    if stream.close_reason:
        attributes.append(("ssetap.stream.close_reason", stream.close_reason))
    attributes += _common(session)
    closed = stream.closed_at if stream.closed_at is not None else (end or stream.opened_at)
    return Span(
        trace_id=session_trace_id(session),
        span_id=_hex("stream", session.key, repr(session.started_at), stream.id, length=16),
        parent_span_id=session_span_id(session), name=f"mcp.sse_stream {stream.role}",
        kind=KIND_INTERNAL, start=stream.opened_at, end=max(closed, stream.opened_at),
        attributes=tuple(attributes), events=tuple(events))


def session_span(session: SessionFacts, findings: Iterable[Finding] = (), *,
                 end: float | None = None) -> Span:
    """The span of one session: its peers and protocol; findings without a stream as events."""
    attributes: list[tuple[str, Any]] = [("ssetap.session.transport", session.transport)]
    for key, value in (("ssetap.client.name", session.client_name),
                       ("ssetap.client.version", session.client_version),
                       ("ssetap.server.name", session.server_name),
                       ("ssetap.server.version", session.server_version)):
        if value:
            attributes.append((key, value))
    attributes += _common(session)
    stop = session.ended_at if session.ended_at is not None else (end or session.started_at)
    return Span(
        trace_id=session_trace_id(session), span_id=session_span_id(session),
        parent_span_id=None, name="mcp.session", kind=KIND_INTERNAL, start=session.started_at,
        end=max(stop, session.started_at), attributes=tuple(attributes),
        events=tuple(sorted((_finding_event(f) for f in findings), key=lambda e: e.t)))


def flag_finding(row: Mapping[str, Any]) -> Finding:
    """A `flags` row as a span event."""
    attributes: list[tuple[str, Any]] = [("ssetap.flag.kind", row["kind"]),
                                         ("ssetap.flag.severity", row["severity"]),
                                         ("ssetap.flag.message", row["message"])]
    if row.get("call_id") is not None:
        attributes.append(("ssetap.flag.call", int(row["call_id"])))
    return Finding("ssetap.flag", float(row["t"]), tuple(attributes), row.get("stream_id"))


def gap_finding(row: Mapping[str, Any]) -> Finding:
    """A `capture_gaps` row (what the recorder could not keep) as a span event at its start."""
    attributes: list[tuple[str, Any]] = [("ssetap.gap.reason", str(row["reason"])),
                                         ("ssetap.gap.bytes", int(row.get("bytes") or 0)),
                                         ("ssetap.gap.chunks", int(row.get("chunks") or 0)),
                                         ("ssetap.gap.ended_at", float(row["ended_at"]))]
    if row.get("events") is not None:
        attributes.append(("ssetap.gap.events", int(row["events"])))
    return Finding("ssetap.capture_gap", float(row["started_at"]), tuple(attributes),
                   row.get("stream_id"))


def duration_of(call: CallFacts) -> float | None:
    if call.answered_at is None:
        return None
    return max(call.answered_at - call.sent_at, 0.0)
