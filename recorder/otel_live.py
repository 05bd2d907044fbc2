"""Spans from a live recording: the ingest's observations in, `recorder.otel` spans out (pure).

Design notes:
- An observer of `recorder.ingest.Observation`s, as the live checks are; it keeps what a span
  needs until the span can be finished: a call's request until its answer, a stream until it
  closes, a session until the recording ends (a session has no reliable end on the wire, so
  its span is sent when the recorder stops). Spans go to `emit`, a callable that must not
  block (the pusher's bounded queue).
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

import orjson

import recorder.otel as otel
from recorder.ingest import Observation

Emit = Callable[[otel.Span], None]


@dataclass(slots=True)
class _Call:
    request: dict[str, Any]
    payload: Any
    session_id: int
    cancelled_at: float | None = None
    progress: int = 0


# Findings kept per session or stream for their span (a flood of flags must not grow memory).
MAX_FINDINGS = 1000


@dataclass(slots=True)
class _Stream:
    row: dict[str, Any]
    session_id: int | None
    heartbeats: list[float] = field(default_factory=list)
    findings: list[otel.Finding] = field(default_factory=list)
    comments: int = 0
    events: int = 0


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


class LiveSpans:
    """Feed it observations; it emits a span per answered call, closed stream and session."""

    def __init__(self, emit: Emit, *, max_pending: int = 10_000) -> None:
        self.emit = emit
        self.max_pending = max_pending
        self.sessions: dict[int, otel.SessionFacts] = {}
        self.calls: OrderedDict[int, _Call] = OrderedDict()
        self.streams: dict[int, _Stream] = {}
        self.session_findings: dict[int, list[otel.Finding]] = {}
        self.now = 0.0

    def flag(self, row: dict[str, Any]) -> None:
        """A flag the live checks raised: an event of its stream's span, or its session's."""
        self._finding(otel.flag_finding(row), row)

    def __call__(self, observation: Observation) -> None:
        if not isinstance(observation, Observation):  # TEMPORARY: a recorder.events value
            from recorder.legacy_observations import as_observations

            for o in as_observations(observation):
                self(o)
            return
        kind, row = observation.kind, observation.row
        self.now = max(self.now, observation.t)
        if kind == "session":
            self._session(row)
        elif kind == "message":
            self._message(row)
        elif kind == "stream-open":
            self.streams[row["id"]] = _Stream(dict(row), row.get("session_id"))
        elif kind == "sse":
            stream = self.streams.get(row["stream_id"])
            if stream is not None:
                if row.get("kind") == "comment":
                    stream.comments += 1
                    if len(stream.heartbeats) < otel.MAX_HEARTBEAT_EVENTS:
                        stream.heartbeats.append(row["t"])
                elif row.get("kind") == "event":
                    stream.events += 1
                if row.get("session_id") is not None:
                    stream.session_id = row["session_id"]
        elif kind == "stream-close":
            stream = self.streams.pop(row["id"], None)
            if stream is not None:
                if row.get("session_id") is not None:
                    stream.session_id = row["session_id"]
                self._stream_span(stream, {**stream.row, **row})

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

    def _session(self, row: dict[str, Any]) -> None:
        known = self.sessions.get(row["id"])
        if known is None:
            if "key" in row:
                self.sessions[row["id"]] = otel.SessionFacts.from_row(row)
            return
        changes = {k: row[k] for k in ("protocol_version", "client_name", "client_version",
                                       "server_name", "server_version") if k in row}
        self.sessions[row["id"]] = replace(known, **changes)

    def _message(self, row: dict[str, Any]) -> None:
        call_id = row.get("call_id")
        if call_id is None:
            return
        kind = row["kind"]
        if kind == "request":
            self.calls[call_id] = _Call(row, _json(row.get("json")), row["session_id"])
            if len(self.calls) > self.max_pending:
                oldest, evicted = self.calls.popitem(last=False)
                self._call_span(oldest, evicted, None)
            return
        call = self.calls.get(call_id)
        if call is None:
            return  # a late or duplicate answer: its call's span is gone already
        if kind == "notification":
            if row.get("method") == "notifications/cancelled":
                call.cancelled_at = row["t"]
            elif row.get("method") == "notifications/progress":
                call.progress += 1
        elif kind in ("result", "error"):
            del self.calls[call_id]
            self._call_span(call_id, call, row)

    def _call_span(self, call_id: int, call: _Call, answer: dict[str, Any] | None) -> None:
        session = self.sessions.get(call.session_id)
        if session is None:
            return
        response = _json(answer.get("json")) if answer else None
        error = response.get("error") if isinstance(response, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        outcome = (answer["kind"] if answer else
                   "cancelled" if call.cancelled_at is not None else "pending")
        facts = otel.CallFacts(
            call_id=call_id, direction=call.request["direction"], rpc_id=call.request["rpc_id"],
            method=call.request.get("method") or "", sent_at=call.request["t"],
            answered_at=answer["t"] if answer else None, outcome=outcome, request=call.payload,
            response=response, error_code=code if isinstance(code, int) else None,
            error_message=message if isinstance(message, str) else None,
            cancelled_at=call.cancelled_at, progress_count=call.progress)
        self.emit(otel.call_span(facts, session, session_end=self.now))

    def _stream_span(self, stream: _Stream, row: dict[str, Any]) -> None:
        session = self.sessions.get(stream.session_id) if stream.session_id else None
        if session is None:
            return
        facts = otel.StreamFacts(
            id=row["id"], role=row.get("role") or "", method=row.get("method") or "",
            opened_at=row["opened_at"], closed_at=row.get("closed_at"),
            close_reason=row.get("close_reason"), events=stream.events,
            comments=stream.comments, bytes=int(row.get("bytes") or 0),
            max_gap_ms=row.get("max_gap_ms"), heartbeats=tuple(stream.heartbeats))
        self.emit(otel.stream_span(facts, session, stream.findings, end=self.now))

    def close(self, t: float) -> None:
        """End of recording: unanswered calls, open streams and every session are sent."""
        self.now = max(self.now, t)
        for call_id, call in list(self.calls.items()):
            self._call_span(call_id, call, None)
        self.calls.clear()
        for stream in list(self.streams.values()):
            self._stream_span(stream, {**stream.row, "closed_at": self.now,
                                       "close_reason": "recorder-stop"})
        self.streams.clear()
        for session in self.sessions.values():
            self.emit(otel.session_span(session, self.session_findings.get(session.id, ()),
                                        end=self.now))
