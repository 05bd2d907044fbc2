"""What every detector shares: the sessions, exchanges, streams and calls seen, and the flags.

Theory of operation:
- One `Context` per run. The facade (monitor.HealthMonitor) updates it with each event
  *before* any detector reads the event (`Context.before`) and, for what an event ends, *after*
  all have (`Context.after`): a detector always sees the exchange, stream or call an event is
  about, including the one the event closes.
- Only facts that more than one concern reads live here (a session's successes, whether it
  initialized, an exchange's status, a stream's lane, a call's carrier...). What one concern
  alone keeps is its detector's own state.
- A detector (`Detector`) declares the event types it reads in `HANDLES`; the facade calls it
  for those only. It raises flags through `Context.flag`, which fires each (kind, subject)
  once: the subject names a finding the same way live and offline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

from recorder.events import (
    CallAnswered,
    CallOpened,
    CallProgressed,
    ChunkSeen,
    ExchangeEnded,
    MessageSeen,
    RequestSeen,
    ResponseSeen,
    SessionJoined,
    SessionOpened,
    SseSeen,
    StreamClosed,
    StreamOpened,
    Tick,
)
from recorder.health.config import HealthConfig
from recorder.health.registry import FLAG_KINDS
from recorder.health.state import (
    CallState,
    ExchangeState,
    Said,
    SessionState,
    StreamState,
    Suspect,
    payload_of,
)
from recorder.model import C2S, Flag

# Said(e, ex, stream) made as the tuple it is: a NamedTuple's own __new__ is a Python
# function, and the context makes one Said per message.
_new_tuple = tuple.__new__


class Context:
    """The bookkeeping every detector reads, and the one place flags are raised."""

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        self.now = 0.0
        self.out: list[Flag] = []
        self.fired: set[tuple[Any, ...]] = set()
        self.sessions: dict[int, SessionState] = {}
        self.exchanges: dict[int, ExchangeState] = {}
        self.streams: dict[int, StreamState] = {}
        # Open calls by call id. The pairing is recorder.correlate's (the call events); what
        # is kept here is what only the checks need: deadlines, carriers, cancels, refusals.
        self.calls: dict[int, CallState] = {}
        # When each answered call got its (first) answer: a second one is a duplicate delivery.
        self.answered_at: dict[int, float] = {}
        # Open calls by (direction, request id) and (direction, progress token), then session:
        # an answer or progress that matches nothing in its own session may match another's
        # (cross-session delivery), which the correlator, per session, cannot see.
        self.open_ids: dict[tuple[str, str], dict[int, int]] = {}
        self.open_tokens: dict[tuple[str, str], dict[int, int]] = {}
        self.mcp_paths: set[tuple[str, str]] = set()  # (server, path) known to speak MCP
        self.reinitialized: dict[tuple[str, str], float] = {}  # client -> last initialize
        # Client-closed streams at a round idle time (streams), confirmed as timeouts by a
        # reconnect (reconnects) or forgotten when none comes (here, on ticks).
        self.idle_suspects: dict[tuple[str, ...], Suspect] = {}
        # The last message, with its exchange and stream: its call event follows at once.
        self.said: Said | None = None
        self._lanes = 0
        self.before: dict[type, Callable[[Any], None]] = {
            SessionOpened: self._session_opened, SessionJoined: self._session_joined,
            RequestSeen: self._request, ResponseSeen: self._response,
            ExchangeEnded: self._exchange_ended, StreamOpened: self._stream_opened,
            ChunkSeen: self._stream_item, SseSeen: self._sse, StreamClosed: self._stream_closed,
            MessageSeen: self._message, CallProgressed: self._progressed,
        }
        self.after: dict[type, Callable[[Any], None]] = {
            ExchangeEnded: self._exchange_gone, StreamClosed: self._stream_gone,
            CallOpened: self._call_opened, CallAnswered: self._call_answered,
            Tick: self._tick,
        }

    # Flags ----------------------------------------------------------------------------------

    def flag(self, kind: str, subject: tuple[Any, ...], t: float, message: str, *,
             severity: str | None = None, session_id: int | None = None,
             stream_id: int | None = None, message_id: int | None = None,
             call_id: int | None = None, exchange_id: int | None = None,
             **details: Any) -> bool:
        key = (kind, *subject)
        if key in self.fired:
            return False
        self.fired.add(key)
        session = self.sessions.get(session_id) if session_id is not None else None
        kept = {k: v for k, v in details.items() if v is not None}
        # The subject names the finding the same way live and offline (ids are the capture's),
        # so `ssetap check` can tell a finding it shares with the live run.
        kept["subject"] = "/".join(str(part) for part in subject)
        self.out.append(Flag(
            kind=kind, severity=severity or FLAG_KINDS[kind], t=t, message=message,
            session_key=session.key if session else None, stream_id=stream_id,
            message_id=message_id, call_id=call_id, exchange_id=exchange_id,
            details=kept, session_id=session_id,
        ))
        return True

    # Lookups --------------------------------------------------------------------------------

    def session(self, session_id: int | None) -> SessionState | None:
        if session_id is None:
            return None
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = SessionState(session_id)
        return session

    def said_for(self, message_id: int) -> Said | None:
        """The last message, if it is the one a call event names."""
        said = self.said
        return said if said is not None and said.message.id == message_id else None

    def close_call(self, call_id: int) -> CallState | None:
        """The call is answered (or replaced by a reused id): forget it and its index entries."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return None
        for index, value in ((self.open_ids, call.rpc_id),
                             (self.open_tokens, call.progress_token)):
            if value is None:
                continue
            owners = index.get((call.direction, value))
            if owners is not None and owners.get(call.session) == call_id:
                del owners[call.session]
                if not owners:
                    del index[(call.direction, value)]
        return call

    # Before the detectors ---------------------------------------------------------

    def _session_opened(self, e: SessionOpened) -> None:
        session = self.session(e.id)
        assert session is not None
        session.key = e.key
        session.transport = e.transport
        host = (e.client_addr or "").rpartition(":")[0]
        session.client = (host, e.user_agent or "")

    def _session_joined(self, e: SessionJoined) -> None:
        ex = self.exchanges.get(e.exchange_id)
        if ex is not None:
            ex.session_id = e.session_id
        stream = self.streams.get(e.stream_id) if e.stream_id is not None else None
        if stream is not None:
            stream.session_id = e.session_id
            if e.stream_role:
                stream.role = e.stream_role

    def _request(self, e: RequestSeen) -> None:
        url = e.url
        parts = urlsplit(url)
        headers = e.headers()
        try:
            port = parts.port
        except ValueError:
            port = None
        scheme = parts.scheme or "http"
        host = (parts.hostname or "").lower()
        shown_port = port or (443 if scheme == "https" else 80)
        client_host = (e.client_addr or "").rpartition(":")[0]
        ex = ExchangeState(
            id=e.id, method=e.method, path=e.path or parts.path or "/", url=url,
            server=f"{scheme}://{host}:{shown_port}", host=host, port=shown_port, scheme=scheme,
            client=(client_host, headers.get("user-agent", "")), started_at=e.started_at,
            headers=headers, mcp=e.mcp,
            # Ingest sets the session of a request that named it (Mcp-Session-Id or the legacy
            # query); one learned later (initialize, endpoint event) comes with SessionJoined.
            named=e.session_id is not None, session_id=e.session_id,
        )
        self.exchanges[ex.id] = ex
        session = self.sessions.get(ex.session_id or -1)
        if ex.method == "DELETE" and session is not None:
            session.ending = True

    def _response(self, e: ResponseSeen) -> None:
        ex = self.exchanges.get(e.id)
        if ex is None:
            return
        ex.status = e.status
        ex.response_headers = e.headers()
        if e.session_id is not None:
            ex.session_id = e.session_id
        if e.mcp:
            ex.mcp = True
        ctype = (e.response_content_type or "").split(";")[0].strip().lower()
        ex.sse = ctype == "text/event-stream"
        session = self.session(ex.session_id)
        if session is not None and 200 <= ex.status < 300 and ex.named:
            session.ok += 1
            session.last_ok_at = e.t
            if ex.method == "DELETE":
                session.deleted = True

    def _exchange_ended(self, e: ExchangeEnded) -> None:
        ex = self.exchanges.get(e.id)
        if ex is None:
            return
        if e.session_id is not None:
            ex.session_id = e.session_id
        if e.mcp:
            ex.mcp = True
        if ex.valid_rpc or ex.mcp:
            self.mcp_paths.add((ex.server, ex.path))

    def _stream_opened(self, e: StreamOpened) -> None:
        ex = self.exchanges.get(e.exchange_id)
        session_id = e.session_id
        if session_id is None and ex is not None:
            session_id = ex.session_id
        sent = e.last_event_id_sent
        lane = 0
        session = self.session(session_id)
        if sent and session is not None and sent in session.event_ids:
            lane = session.event_ids[sent][0]  # a resume continues the stream it resumes
        if not lane:
            self._lanes += 1
        stream = StreamState(
            id=e.id, exchange_id=e.exchange_id, session_id=session_id,
            method=e.method or (ex.method if ex else "GET"),
            path=ex.path if ex else "?", role=e.role or "", opened_at=e.opened_at,
            last_event_id_sent=sent, lane=lane or self._lanes,
        )
        self.streams[stream.id] = stream
        if lane and session is not None:
            session.resumed[lane] = e.opened_at
        if ex is not None:
            ex.stream_id = stream.id
            for call_id in ex.calls:
                call = self.calls.get(call_id)
                if call is not None:
                    call.stream_id = stream.id

    def _stream_item(self, e: ChunkSeen | SseSeen | StreamClosed) -> None:
        stream = self.streams.get(e.stream_id)
        if stream is not None and stream.session_id is None and e.session_id is not None:
            stream.session_id = e.session_id

    def _sse(self, e: SseSeen) -> None:
        stream = self.streams.get(e.stream_id)  # _stream_item, with one lookup for both
        if stream is None:
            return
        if stream.session_id is None and e.session_id is not None:
            stream.session_id = e.session_id
        if e.kind == "event" and e.type == "endpoint":
            session = self.session(stream.session_id)
            if session is not None:
                session.fresh_legacy = True  # the legacy session began in this capture

    def _stream_closed(self, e: StreamClosed) -> None:
        self._stream_item(e)
        stream = self.streams.get(e.stream_id)
        if stream is None:
            return
        if e.retry_ms is not None:
            stream.retry_ms = e.retry_ms
        ex = self.exchanges.get(stream.exchange_id or -1)
        if ex is not None:  # the exchange's end (reconnects, calls) reads how its stream ended
            ex.stream_reason = e.close_reason or "end"
            ex.stream_retry_ms = stream.retry_ms

    def _message(self, e: MessageSeen) -> None:
        ex = self.exchanges.get(e.exchange_id) if e.exchange_id is not None else None
        if ex is not None and ex.session_id is None:
            ex.session_id = e.session_id
        stream = self.streams.get(e.stream_id) if e.stream_id else None
        self.said = _new_tuple(Said, (e, ex, stream))  # Said(e, ex, stream), see _new_tuple
        if e.kind == "invalid":
            return
        if ex is not None:
            ex.valid_rpc = True
        if stream is not None:
            stream.valid_rpc = True
        if e.kind == "error" and ex is not None:
            payload = payload_of(e)
            error = payload.get("error") if isinstance(payload, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            if isinstance(text, str):
                ex.error_texts.append(text)  # "session not found" may only be said here
        session = self.session(e.session_id)
        if e.kind == "request" and e.direction == C2S and e.rpc_id is not None \
                and session is not None:
            method = e.method or ""
            if method not in ("initialize", "ping"):
                session.work += 1
            # 2026-07-28 has no handshake: `server/discover` (or nothing) starts a session, and
            # a v2 client over legacy SSE sends it on the new endpoint instead of initialize.
            if method in ("initialize", "server/discover"):
                session.initialized = True
                self.reinitialized[session.client] = e.t
                if ex is not None:
                    self.reinitialized[ex.client] = e.t

    def _progressed(self, e: CallProgressed) -> None:
        call = self.calls.get(e.call_id)
        if call is not None:
            call.progress = e.progress_count
            call.last_progress_at = e.t

    # After the detectors --------------------------------------------------------

    def _exchange_gone(self, e: ExchangeEnded) -> None:
        self.exchanges.pop(e.id, None)

    def _stream_gone(self, e: StreamClosed) -> None:
        self.streams.pop(e.stream_id, None)

    def _call_opened(self, e: CallOpened) -> None:
        if e.replaced is not None:
            self.close_call(e.replaced)
        said = self.said_for(e.request_message_id)
        message = said.message if said is not None else None
        call = CallState(
            call_id=e.id, session=e.session_id, direction=e.direction, rpc_id=e.rpc_id,
            method=e.method, name=e.name, message_id=e.request_message_id,
            exchange_id=message.exchange_id if message is not None else None, sent_at=e.sent_at,
            deadline=self.config.timeout_for(e.method), progress_token=e.progress_token,
        )
        self.calls[call.call_id] = call
        self.open_ids.setdefault((call.direction, call.rpc_id), {})[call.session] = call.call_id
        if call.progress_token is not None:
            self.open_tokens.setdefault((call.direction, call.progress_token), {})[
                call.session] = call.call_id
        ex = said.exchange if said is not None else None
        if e.direction == C2S and ex is not None and message is not None \
                and message.stream_id is None:
            ex.calls.append(call.call_id)  # the POST that carries it: its stream, its status
            call.stream_id = ex.stream_id
            if ex.status is not None and ex.status >= 400:
                call.rejected = ex.status  # e.g. the POST before a legacy GET fallback

    def _call_answered(self, e: CallAnswered) -> None:
        self.answered_at.setdefault(e.call_id, e.t)
        self.close_call(e.call_id)

    def _tick(self, e: Tick) -> None:
        for key in [k for k, v in self.idle_suspects.items() if v.due < self.now]:
            del self.idle_suspects[key]


class Detector:
    """One concern's checks: `HANDLES` maps each event type it reads to its method's name."""

    HANDLES: ClassVar[dict[type, str]] = {}

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.config = ctx.config

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {kind: getattr(self, name) for kind, name in self.HANDLES.items()}

    def tick(self, t: float) -> None:
        """Time passed (a `Tick`): what is overdue is decided now."""

