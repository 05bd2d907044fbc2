"""Turn the proxy's raw facts into capture rows: sessions, exchanges, streams, events, calls.

Design notes:
- Input is a sequence of plain tuples (`RawEvent`), the same ones the addon ships from the
  proxy process: request, response headers, stream chunk, response end, error, tick. Output is
  typed events (recorder.events) handed to the redaction stage, which stores them and returns
  them redacted for the observers (stream-health checks, live spans). The clock is whatever
  time the facts carry.
- Sessions: Streamable HTTP groups by `Mcp-Session-Id`; the legacy transport by the session id
  in its endpoint URL (learned from the GET stream's `endpoint` event); sessionless traffic
  (stateless servers, the 2026-07-28 revision) by client host, user agent and server, a new
  session starting at each `initialize` or `server/discover`.
- A POST whose session is not known yet (an `initialize`, or a stateless request) is held until
  its response headers say which session it belongs to; a POST that names its session is
  processed at once, because its answer may reach the legacy GET stream before its own 202.
- Ingest works on values as they came; every event leaves through the redaction stage
  (`recorder/redact_stage.py`), the one place where secrets are taken out of what is stored
  and shown.
"""

from __future__ import annotations

import zlib
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from recorder.correlate import Correlator
from recorder.events import (
    ChunkSeen,
    ChunkStored,
    Event,
    ExchangeEnded,
    InjectionMade,
    MessageSeen,
    RequestSeen,
    ResponseSeen,
    SessionJoined,
    SessionLearned,
    SessionOpened,
    SessionSeen,
    SseSeen,
    StreamClosed,
    StreamCounters,
    StreamOpened,
    Tick,
)
from recorder.handshake import session_facts
from recorder.ingest_gaps import GapIngest
from recorder.ingest_state import (
    MAX_STORED_BODY,
    FlowState,
    Observer,
    SessionState,
    Sink,
    StreamState,
    cap,
    decoded,
    lower_headers,
)
from recorder.jsonrpc import decode
from recorder.model import (
    C2S,
    INVALID,
    REQUEST,
    RESULT,
    S2C,
    SSE,
    STREAMABLE_HTTP,
    SseComment,
    SseControl,
    SseEvent,
    SseIncomplete,
)
from recorder.redact import Redactor, session_param
from recorder.redact_stage import RedactionStage
from recorder.redact_stage import Sink as StoreSink
from recorder.sse import SseParser
from recorder.wire import GAP, INJECTION, RESUME, Fact

# The names other modules import from here (the state values live in recorder.ingest_state).
__all__ = ["MAX_STORED_BODY", "Ingest", "Observer", "RawEvent", "Sink"]

# A raw fact from the proxy: the tuples that recorder.wire names and describes.
RawEvent = Fact


# A stream whose tail the redaction stage held back this long is stored without waiting for
# the next chunk: the capture must be at most a fraction of a second behind the wire (a
# `kill -9` loses no more), at the price of a secret split across two chunks this far apart.
TAIL_FLUSH_SECONDS = 0.05


class Ingest(GapIngest):
    """The recorder's core: feed it raw events, it writes rows and notifies observers."""

    def __init__(self, sink: Sink | StoreSink, redactor: Redactor,
                 observers: list[Observer] | None = None, *,
                 update_interval: float = 1.0) -> None:
        # Events leave ingest through the redaction stage: `sink` is one (the worker shares
        # it with the observers, so that their flags are redacted by the same learned
        # secrets), or the store's writer (or any sink of rows) to put one in front of.
        self.sink: Sink = sink if isinstance(sink, RedactionStage) else RedactionStage(
            cast(StoreSink, sink), redactor)
        self.redactor = redactor
        self.observers = observers or []
        self.correlator = Correlator()
        self.flows: dict[str, FlowState] = {}
        self.sessions: dict[str, SessionState] = {}
        self._anon: dict[tuple[str, str, str], SessionState] = {}
        self._anon_count = 0
        self._update_interval = update_interval
        self._last_flush = 0.0
        self.now = 0.0
        # {flow id: bytes stored} of streams a dead worker left open (recorder.store).
        self.recovered: dict[str, int] = {}

    # Entry point --------------------------------------------------------------------------

    def feed(self, event: RawEvent) -> None:
        kind = event[0]
        if kind == "c":
            self._chunk(event[1], event[2], event[3])
        elif kind == "q":
            self._request(*event[1:9], body_size=event[9] if len(event) > 9 else None)
        elif kind == "h":
            self._response_headers(*event[1:])
        elif kind == "e":
            self._response_end(event[1], event[2], event[3])
        elif kind == "x":
            self._error(event[1], event[2], event[3])
        elif kind == "t":
            self.tick(event[1])
        elif kind == GAP:
            self._gap(*event[1:])
        elif kind == RESUME:
            self._resume(event[1], event[2], event[3], event[4], event[5],
                         self.recovered.get(event[1]))
        elif kind == INJECTION:
            self._injection(event[1], event[2], event[3])

    def _injection(self, flow_id: str, t: float, payload: bytes) -> None:
        """Record a change `--fault` made, tied to the exchange and stream it touched."""
        try:
            injection = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        flow = self.flows.get(flow_id)
        detail = injection.get("detail")
        self._record(InjectionMade(
            self.sink.next_id("injections"),
            flow.session.id if flow and flow.session else None,
            flow.exchange_id if flow else None,
            flow.stream.id if flow and flow.stream else None,
            t, str(injection.get("spec")), str(injection.get("kind")),
            str(injection.get("action")), orjson.dumps(detail).decode() if detail else None))

    def tick(self, t: float) -> None:
        self.now = max(self.now, t)
        # The tail of a quiet stream is stored by time, not held until a next chunk.
        self.sink.flush_quiet(t, TAIL_FLUSH_SECONDS)
        if t - self._last_flush >= self._update_interval:
            self._flush_state()
            self._last_flush = t
        self._record(Tick(t))
        self.sink.submit()  # what waits in the writer's buffer goes to its thread now

    def close(self, t: float) -> None:
        """End of recording: close what is still open, as the recorder saw it."""
        for flow_id in list(self.flows):
            self._finish(flow_id, t, error="recording stopped", reason="recorder-stop")
        self._flush_state()
        self.sink.flush_all()

    # Observers ----------------------------------------------------------------------------

    def _record(self, event: Event) -> None:
        """Store an event (through the redaction stage) and show it, redacted, to observers."""
        self._show(self.sink.record(event))

    # Sessions ----------------------------------------------------------------------------

    def _session(self, key: str, transport: str, flow: FlowState, t: float) -> SessionState:
        session = self.sessions.get(key)
        if session is None:
            # The session began with this flow's request, even if its id showed up only in
            # the response (an `initialize`) or in a later stream event (the legacy endpoint).
            t = min(t, flow.started_at)
            session = SessionState(self.sink.next_id("sessions"), key, transport, t)
            self.sessions[key] = session
            self._record(SessionOpened(session.id, key, transport, flow.server, flow.path, t, t,
                                       flow.client_addr, flow.user_agent or None))
        return session

    def _touch(self, session: SessionState | None, t: float) -> None:
        if session is not None and t > session.last_seen:
            session.last_seen = t
            session.dirty = True

    @staticmethod
    def _anon_group(flow: FlowState) -> tuple[str, str, str]:
        """Sessionless traffic is grouped by client host, user agent and server."""
        return (flow.client_addr.rpartition(":")[0] or flow.client_addr, flow.user_agent,
                flow.server)

    def _anon_session(self, flow: FlowState, t: float, first_method: str | None) -> SessionState:
        group = self._anon_group(flow)
        session = self._anon.get(group)
        if session is None or first_method in ("initialize", "server/discover"):
            self._anon_count += 1
            key = f"anon:{self._anon_count}"
            session = self._session(key, STREAMABLE_HTTP, flow, t)
            self._anon[group] = session
        return session

    def _join_anon_session(self, flow: FlowState, t: float) -> None:
        """A sessionless GET or DELETE that got no stream (a stateless server's 405) joins
        its client's current sessionless session, if it has one: it is part of that session's
        story (and the mock learns from it that GET is refused)."""
        group = self._anon_group(flow)
        session = self._anon.get(group)
        if session is not None:
            self._attach(flow, session, t)

    def _attach(self, flow: FlowState, session: SessionState, t: float, *,
                stream_role: str | None = None) -> None:
        flow.session = session
        self._record(SessionJoined(t, session.id, flow.exchange_id,
                                   flow.stream.id if flow.stream is not None else None,
                                   stream_role if flow.stream is not None else None))
        self._touch(session, t)

    # Requests -----------------------------------------------------------------------------

    def _request(self, flow_id: str, t: float, method: str, url: str, http_version: str,
                 headers: list[tuple[str, str]], body: bytes | None, client_addr: str, *,
                 body_size: int | None = None) -> None:
        self.now = max(self.now, t)
        lower = lower_headers(headers)
        parts = urlsplit(url)
        server = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        flow = FlowState(
            exchange_id=self.sink.next_id("exchanges"), method=method,
            url=url, path=parts.path or "/", started_at=t,
            client_addr=client_addr, user_agent=lower.get("user-agent", ""), server=server,
            headers=lower, body=body,
        )
        self.flows[flow_id] = flow
        messages = decode(body) if (method == "POST" and body and self._jsonish(lower)) else []
        accept = lower.get("accept", "")
        flow.mcp = bool(
            any(m.kind != INVALID for m in messages)
            or "mcp-session-id" in lower or "mcp-protocol-version" in lower
            or "mcp-method" in lower or session_param(url)
            or (method == "GET" and "text/event-stream" in accept)
        )
        # A request that names its session belongs to it from the start.
        session_header = lower.get("mcp-session-id")
        legacy_id = session_param(url) if not session_header else None
        if session_header:
            flow.session = self._session("sid:" + session_header, STREAMABLE_HTTP, flow, t)
        elif legacy_id:
            flow.session = self._session("legacy:" + legacy_id, SSE, flow, t)
        self._record(RequestSeen(
            flow.exchange_id, flow_id, method, flow.url, flow.path, tuple(headers),
            cap(body) if body else None, lower.get("content-type"), t, client_addr, flow.mcp,
            body_size if body_size is not None else (len(body) if body else 0),
            flow.session.id if flow.session is not None else None))
        self._touch(flow.session, t)
        if messages:
            if flow.session is not None:
                self._messages(flow, messages, C2S, t, stream=None, sse_event_id=None)
            else:
                flow.deferred.append((messages, t))

    @staticmethod
    def _jsonish(headers: dict[str, str]) -> bool:
        ctype = headers.get("content-type", "application/json")
        return "json" in ctype or not ctype

    # Responses ----------------------------------------------------------------------------

    def _response_headers(self, flow_id: str, t: float, status: int, reason: str,
                          headers: list[tuple[str, str]], streamed: bool) -> None:
        flow = self.flows.get(flow_id)
        if flow is None:
            return
        self.now = max(self.now, t)
        lower = lower_headers(headers)
        flow.response_headers = lower
        ctype = lower.get("content-type", "")
        session_header = lower.get("mcp-session-id")
        if session_header:
            flow.mcp = True
        if flow.session is None and session_header and 200 <= status < 300:
            key = "sid:" + session_header
            self._attach(flow, self._session(key, STREAMABLE_HTTP, flow, t), t)
        is_sse = ctype.split(";")[0].strip().lower() == "text/event-stream"
        mcp = flow.mcp  # as the headers told; an SSE stream also marks the flow MCP below
        if flow.session is None and flow.mcp and flow.method in ("GET", "DELETE") and not (
                is_sse and 200 <= status < 300):
            self._join_anon_session(flow, t)
        if is_sse and 200 <= status < 300:
            role = "post" if flow.method == "POST" else (
                "resume" if "last-event-id" in flow.headers else
                ("get" if flow.session is not None else "legacy"))
            stream = StreamState(self.sink.next_id("streams"), SseParser(), t)
            encoding = lower.get("content-encoding", "").strip().lower()
            if encoding in ("gzip", "x-gzip", "deflate"):
                stream.decoder = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)
            flow.stream = stream
            flow.mcp = True
            self._record(StreamOpened(stream.id, flow.exchange_id,
                                      flow.session.id if flow.session else None, flow.method,
                                      role, flow.headers.get("last-event-id"), t,
                                      lower.get("content-encoding")))
        self._record(ResponseSeen(flow.exchange_id, t, status, reason, tuple(headers),
                                  ctype or None, bool(streamed), mcp,
                                  flow.session.id if flow.session else None))
        if flow.deferred and (flow.session is not None or flow.method == "POST"):
            self._release_deferred(flow, t)

    def _release_deferred(self, flow: FlowState, t: float) -> None:
        if flow.session is None:
            first = flow.deferred[0][0]
            method = next((m.method for m in first if m.kind == REQUEST), None)
            self._attach(flow, self._anon_session(flow, flow.started_at, method), t)
        for messages, at in flow.deferred:
            self._messages(flow, messages, C2S, at, stream=None, sse_event_id=None)
        flow.deferred.clear()

    def _chunk(self, flow_id: str, t: float, data: bytes) -> None:
        flow = self.flows.get(flow_id)
        if flow is None or not data:
            return
        stream = flow.stream
        if stream is None:
            # A plain (JSON, HTML...) response streamed through the tap: keep it for the end.
            if flow.response_size < MAX_STORED_BODY:
                flow.response_parts.append(data)
            flow.response_size += len(data)
            flow.response_last_t = t
            return
        self.now = max(self.now, t)
        if stream.last_byte_at is None:
            stream.first_byte_at = t
        gap = (t - (stream.last_byte_at or stream.opened_at)) * 1000.0
        stream.max_gap_ms = max(stream.max_gap_ms, gap)
        stream.last_byte_at = t
        seq = stream.chunks
        stream.chunks += 1
        stream.byte_count += len(data)
        stream.dirty = True
        chunk_seen = ChunkSeen(t, stream.id, flow.session.id if flow.session else None, seq,
                               len(data))
        self._show(chunk_seen)  # no secret in it: not through the stage, nothing to store
        parsed = data
        if stream.decoder is not None:
            try:
                parsed = stream.decoder.decompress(data)
            except zlib.error:
                stream.decoder = None  # not what it claimed: parse the bytes as they are
        if parsed and stream.resync:
            parsed = self._resync(stream, parsed)
        if parsed:
            self._items(flow, stream, stream.parser.feed(parsed), t)
        self._store_chunk(stream, t, data)
        self._touch(flow.session, t)

    def _store_chunk(self, stream: StreamState, t: float, data: bytes) -> None:
        if data:
            self._write_chunk(stream, stream.stored_offset, t, data)
            stream.stored_offset += len(data)

    def _write_chunk(self, stream: StreamState, offset: int, t: float, data: bytes) -> None:
        # Stored, not shown: observers had the chunk's ChunkSeen; the stage may hold it back.
        self.sink.record(ChunkStored(self.sink.next_id("chunks"), stream.id, stream.written, t,
                                     offset, data))
        stream.written += 1

    def _items(self, flow: FlowState, stream: StreamState, items: list[Any], t: float) -> None:
        next_id = self.sink.next_id
        for item in items:
            session_id = flow.session.id if flow.session else None
            if type(item) is SseEvent:
                stream.events += 1
                if item.retry is not None:
                    stream.retry_ms = item.retry
                data = item.data
                if item.type == "endpoint" and flow.session is None:
                    self._legacy_endpoint(flow, data, t)
                    session_id = flow.session.id if flow.session else None
                event_id = next_id("sse_events")
                self._record(SseSeen(event_id, stream.id, session_id, t, "event", item.type,
                                     data if len(data) <= MAX_STORED_BODY else None, item.id,
                                     item.last_event_id, item.retry, item.start, item.end))
                if item.type == "message" and data:
                    messages = decode(data)
                    if messages:
                        if flow.session is None:
                            self._attach(flow, self._anon_session(flow, t, None), t)
                        self._messages(flow, messages, S2C, t, stream=stream,
                                       sse_event_id=event_id, text=data)
                continue
            if isinstance(item, SseComment):
                stream.comments += 1
                sse = SseSeen(next_id("sse_events"), stream.id, session_id, t, "comment", None,
                              item.text, None, None, None, item.start, item.end)
            elif isinstance(item, SseControl):
                if item.retry is not None:
                    stream.retry_ms = item.retry
                sse = SseSeen(next_id("sse_events"), stream.id, session_id, t, "control", None,
                              None, item.id, item.last_event_id, item.retry, item.start,
                              item.end)
            else:
                if isinstance(item, SseIncomplete):
                    stream.truncated = True
                sse = SseSeen(next_id("sse_events"), stream.id, session_id, t,
                              "incomplete" if isinstance(item, SseIncomplete) else "oversize",
                              None, None, None, None, None, item.start, item.end)
            self._record(sse)

    def _legacy_endpoint(self, flow: FlowState, data: str, t: float) -> None:
        legacy_id = session_param(data)
        if legacy_id:
            key = "legacy:" + legacy_id
            session = self._session(key, SSE, flow, t)
        else:
            # An endpoint without a session id in it: one session per GET stream.
            self._anon_count += 1
            session = self._session(f"legacy-stream:{self._anon_count}", SSE, flow, t)
        self._attach(flow, session, t, stream_role="legacy")

    def _response_end(self, flow_id: str, t: float, body: bytes | None) -> None:
        flow = self.flows.get(flow_id)
        if flow is None:
            return
        if body is None and flow.response_parts:
            body = decoded(b"".join(flow.response_parts),
                            flow.response_headers.get("content-encoding", ""))
        if body and flow.stream is None:
            ctype = flow.response_headers.get("content-type", "")
            if "json" in ctype and flow.method == "POST":
                # The answer arrived with its last byte, not when the proxy wrapped up.
                answered = flow.response_last_t or t
                messages = decode(body)
                if messages:
                    if flow.session is None:
                        if flow.deferred:
                            self._release_deferred(flow, answered)
                        else:
                            self._attach(flow, self._anon_session(flow, answered, None), answered)
                    self._messages(flow, messages, S2C, answered, stream=None, sse_event_id=None)
        stored = cap(body) if body and flow.stream is None and not flow.response_gap else None
        self._finish(flow_id, t, error=None, reason="end", response_body=stored,
                     response_size=flow.response_size or len(body or b""))

    def _error(self, flow_id: str, t: float, message: str) -> None:
        lower = message.lower()
        reason = "client-disconnect" if "client disconnected" in lower else "error"
        self._finish(flow_id, t, error=message, reason=reason)

    def _finish(self, flow_id: str, t: float, *, error: str | None, reason: str,
                response_body: bytes | None = None, response_size: int = 0) -> None:
        flow = self.flows.pop(flow_id, None)
        if flow is None:
            return
        self.now = max(self.now, t)
        if flow.deferred:
            self._release_deferred(flow, t)
        stream = flow.stream
        if stream is not None:
            if stream.resync:
                stream.resync = False  # the stream ended inside the event the gap cut
            else:
                self._items(flow, stream, stream.parser.feed(b""), t)
            self._record_pending_gap(stream)
            self._record(StreamClosed(t, stream.id, flow.session.id if flow.session else None,
                                      reason, self._stream_counters(stream, t)))
        self._record(ExchangeEnded(flow.exchange_id, t, error, flow.mcp,
                                   flow.session.id if flow.session else None, response_body,
                                   response_size))
        self._touch(flow.session, t)

    @staticmethod
    def _stream_counters(stream: StreamState, t: float) -> StreamCounters:
        stream.dirty = False
        return StreamCounters(t, stream.id, stream.byte_count, stream.chunks, stream.events,
                              stream.comments, stream.max_gap_ms, stream.truncated,
                              stream.retry_ms, stream.first_byte_at)

    def _flush_state(self) -> None:
        for flow in self.flows.values():
            if flow.stream is not None and flow.stream.dirty:
                self._record(self._stream_counters(flow.stream, self.now))
        for session in self.sessions.values():
            if session.dirty:
                session.dirty = False
                self._record(SessionSeen(session.last_seen, session.id))

    # Messages -------------------------------------------------------------------------------

    def _messages(self, flow: FlowState, messages: list[Any], direction: str, t: float, *,
                  stream: StreamState | None, sse_event_id: int | None,
                  text: str | None = None) -> None:
        """Store and correlate decoded messages; `text` is their source as it came.

        A lone message keeps its source text as it came, which also spares re-encoding it on
        the worker's hottest path; batch members are encoded one by one.
        """
        session = flow.session
        assert session is not None
        lone = text if len(messages) == 1 and messages[0].batch_index is None else None
        self._touch(session, t)
        for message in messages:
            message_id = self.sink.next_id("messages")
            call_id = None
            call_event = None
            if message.kind != INVALID:
                corr = self.correlator.observe(session.id, direction, message, t, message_id,
                                               self.sink.next_id("calls")
                                               if message.kind == REQUEST else 0)
                call_event = corr.event
                if corr.call is not None:
                    call_id = corr.call.call_id
                if message.kind == REQUEST or message.kind == RESULT:
                    self._session_facts(session, message, direction, t)
            payload = message.payload
            problem = message.problem
            text_json = None if payload is None else (
                lone if lone is not None
                else orjson.dumps(payload).decode())
            if text_json is not None and len(text_json) > MAX_STORED_BODY:
                # The same cap as bodies: the message is kept (kind, method, id), its JSON not.
                problem = (f"JSON not stored: {len(text_json):,} characters, over the "
                           f"{MAX_STORED_BODY:,} cap")
                text_json = None
            self._record(MessageSeen(
                message_id, session.id, flow.exchange_id, stream.id if stream else None,
                sse_event_id, t, direction, message.kind, message.id_key, message.method,
                message.batch_index, text_json, problem, call_id, payload))
            if call_event is not None:
                # Stored after the message it names (calls reference their messages).
                self._record(call_event)

    def _session_facts(self, session: SessionState, message: Any, direction: str,
                       t: float) -> None:
        """Client, server and protocol version from the handshake (recorder.handshake)."""
        changes = session_facts(message, direction, session.initialized)
        if changes:
            if message.kind == RESULT and "protocol_version" in changes:
                session.initialized = True
            self._record(SessionLearned(t, session.id, **changes))
