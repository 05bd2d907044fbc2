"""Spans from a live recording: the ingest's events in, `recorder.otel` spans out (pure).

Design notes:
- An observer of the recorder's events (recorder.events), as the live checks are, dispatched
  by event type; it keeps what a span needs until the span can be finished: a call's request
  until its answer, a stream until it closes, a session until the recording ends (a session
  has no reliable end on the wire, so its span is sent when the recorder stops). Spans go to
  `emit`, a callable that must not block (the pusher's bounded queue).
- Calls are recorder.correlate's pairing (the call events); the decoded request and answer
  come from the `MessageSeen` just before each call event, never parsed again.
- State is bounded: at most `max_pending` unanswered calls are kept (the oldest is then sent as
  pending), so a server that never answers cannot grow the recorder's memory.
- The same span builders as the file export (`recorder.otel`), so a live push and an export of
  the same session agree on names, attributes and ids.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import recorder.otel as otel
from recorder.events import (
    CallAnswered,
    CallCancelled,
    CallOpened,
    CallProgressed,
    Event,
    MessageSeen,
    SessionJoined,
    SessionLearned,
    SessionOpened,
    SseSeen,
    StreamClosed,
    StreamCounters,
    StreamOpened,
)

Emit = Callable[[otel.Span], None]


@dataclass(slots=True)
class _Call:
    opened: CallOpened
    payload: Any  # the request's decoded JSON
    cancelled_at: float | None = None
    progress: int = 0


# Findings kept per session or stream for their span (a flood of flags must not grow memory).
MAX_FINDINGS = 1000


@dataclass(slots=True)
class _Stream:
    opened: StreamOpened
    session_id: int | None
    role: str
    heartbeats: list[float] = field(default_factory=list)
    findings: list[otel.Finding] = field(default_factory=list)
    comments: int = 0
    events: int = 0
    counters: StreamCounters | None = None


class LiveSpans:
    """Feed it events; it emits a span per answered call, closed stream and session."""

    def __init__(self, emit: Emit, *, max_pending: int = 10_000) -> None:
        self.emit = emit
        self.max_pending = max_pending
        self.sessions: dict[int, otel.SessionFacts] = {}
        self.calls: OrderedDict[int, _Call] = OrderedDict()
        self.streams: dict[int, _Stream] = {}
        self.session_findings: dict[int, list[otel.Finding]] = {}
        self.now = 0.0
        # The last message that belongs to a call: its call event (which follows at once)
        # takes the decoded request or answer from it.
        self._message: MessageSeen | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            SessionOpened: self._session, SessionLearned: self._learned,
            SessionJoined: self._joined, StreamOpened: self._stream_open, SseSeen: self._sse,
            StreamCounters: self._counters, StreamClosed: self._stream_close,
            MessageSeen: self._remember, CallOpened: self._call_opened,
            CallAnswered: self._call_answered, CallProgressed: self._call_progressed,
            CallCancelled: self._call_cancelled,
        }

    def flag(self, row: dict[str, Any]) -> None:
        """A flag the live checks raised: an event of its stream's span, or its session's."""
        self._finding(otel.flag_finding(row), row)

    def __call__(self, event: Event) -> None:
        self.now = max(self.now, event.t)
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    # Sessions and streams --------------------------------------------------------------------

    def _session(self, e: SessionOpened) -> None:
        if e.id not in self.sessions:
            self.sessions[e.id] = otel.SessionFacts(
                id=e.id, key=e.key, transport=e.transport, server=e.server,
                started_at=e.started_at, ended_at=e.ended_at)

    def _learned(self, e: SessionLearned) -> None:
        known = self.sessions.get(e.session_id)
        if known is None:
            return
        changes: dict[str, Any] = {k: v for k, v in (
            ("protocol_version", e.protocol_version), ("client_name", e.client_name),
            ("client_version", e.client_version), ("server_name", e.server_name),
            ("server_version", e.server_version)) if v is not None}
        if changes:
            self.sessions[e.session_id] = replace(known, **changes)

    def _joined(self, e: SessionJoined) -> None:
        stream = self.streams.get(e.stream_id) if e.stream_id is not None else None
        if stream is not None:
            stream.session_id = e.session_id
            if e.stream_role:
                stream.role = e.stream_role

    def _stream_open(self, e: StreamOpened) -> None:
        self.streams[e.id] = _Stream(e, e.session_id, e.role)

    def _sse(self, e: SseSeen) -> None:
        stream = self.streams.get(e.stream_id)
        if stream is None:
            return
        if e.kind == "comment":
            stream.comments += 1
            if len(stream.heartbeats) < otel.MAX_HEARTBEAT_EVENTS:
                stream.heartbeats.append(e.t)
        elif e.kind == "event":
            stream.events += 1
        if e.session_id is not None:
            stream.session_id = e.session_id

    def _counters(self, e: StreamCounters) -> None:
        stream = self.streams.get(e.stream_id)
        if stream is not None:
            stream.counters = e

    def _stream_close(self, e: StreamClosed) -> None:
        stream = self.streams.pop(e.stream_id, None)
        if stream is not None:
            if e.session_id is not None:
                stream.session_id = e.session_id
            stream.counters = e.counters
            self._stream_span(stream, e.t, e.close_reason)

    def gap(self, row: dict[str, Any]) -> None:
        """What the recording could not keep (a `capture_gaps` row): an event like a flag."""
        self._finding(otel.gap_finding(row), row)

    def _finding(self, finding: otel.Finding, row: dict[str, Any]) -> None:
        stream = self.streams.get(row["stream_id"]) if row.get("stream_id") else None
        if stream is not None:
            if len(stream.findings) < MAX_FINDINGS:
                stream.findings.append(finding)
        elif row.get("session_id") is not None:
            found = self.session_findings.setdefault(row["session_id"], [])
            if len(found) < MAX_FINDINGS:
                found.append(finding)

    # Calls ---------------------------------------------------------------------------------

    def _remember(self, e: MessageSeen) -> None:
        self._message = e if e.call_id is not None else None

    def _said(self, message_id: int) -> MessageSeen | None:
        message = self._message
        return message if message is not None and message.id == message_id else None

    def _call_opened(self, e: CallOpened) -> None:
        request = self._said(e.request_message_id)
        self.calls[e.id] = _Call(e, request.payload if request is not None else None)
        if len(self.calls) > self.max_pending:
            oldest, evicted = self.calls.popitem(last=False)
            self._call_span(oldest, evicted, None, None)

    def _call_progressed(self, e: CallProgressed) -> None:
        call = self.calls.get(e.call_id)
        if call is not None:
            call.progress = e.progress_count

    def _call_cancelled(self, e: CallCancelled) -> None:
        call = self.calls.get(e.call_id)
        if call is not None:
            call.cancelled_at = e.t

    def _call_answered(self, e: CallAnswered) -> None:
        call = self.calls.pop(e.call_id, None)
        if call is None:
            return  # its span went out already (evicted as pending)
        self._call_span(e.call_id, call, e, self._said(e.response_message_id))

    def _call_span(self, call_id: int, call: _Call, answer: CallAnswered | None,
                   message: MessageSeen | None) -> None:
        opened = call.opened
        session = self.sessions.get(opened.session_id)
        if session is None:
            return
        if answer is not None:
            # What the answer was, even if the client had cancelled the call (a late answer).
            outcome = message.kind if message is not None else answer.outcome or "result"
        else:
            outcome = "cancelled" if call.cancelled_at is not None else "pending"
        facts = otel.CallFacts(
            call_id=call_id, direction=opened.direction, rpc_id=opened.rpc_id,
            method=opened.method or "", sent_at=opened.sent_at,
            answered_at=answer.t if answer else None, outcome=outcome, request=call.payload,
            response=message.payload if message is not None else None,
            error_code=answer.error_code if answer else None,
            error_message=answer.error_message if answer else None,
            cancelled_at=call.cancelled_at, progress_count=call.progress)
        self.emit(otel.call_span(facts, session, session_end=self.now))

    def _stream_span(self, stream: _Stream, closed_at: float | None,
                     close_reason: str | None) -> None:
        session = self.sessions.get(stream.session_id) if stream.session_id else None
        if session is None:
            return
        opened, counters = stream.opened, stream.counters
        facts = otel.StreamFacts(
            id=opened.id, role=stream.role, method=opened.method, opened_at=opened.opened_at,
            closed_at=closed_at, close_reason=close_reason, events=stream.events,
            comments=stream.comments, bytes=counters.bytes if counters else 0,
            max_gap_ms=round(counters.max_gap_ms, 3) if counters else None,
            heartbeats=tuple(stream.heartbeats))
        self.emit(otel.stream_span(facts, session, stream.findings, end=self.now))

    def close(self, t: float) -> None:
        """End of recording: unanswered calls, open streams and every session are sent."""
        self.now = max(self.now, t)
        for call_id, call in list(self.calls.items()):
            self._call_span(call_id, call, None, None)
        self.calls.clear()
        for stream in list(self.streams.values()):
            self._stream_span(stream, self.now, "recorder-stop")
        self.streams.clear()
        for session in self.sessions.values():
            self.emit(otel.session_span(session, self.session_findings.get(session.id, ()),
                                        end=self.now))
