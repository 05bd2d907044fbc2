"""The detector facade: recorder events in time order in, flags out (`HealthMonitor`).

The monitor keeps the shared bookkeeping (sessions, exchanges, streams) up to date and hands
each event to the detectors that read it, through one table keyed by the event's type (see
`HealthMonitor.HANDLES`). Every other event type passes untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from recorder.events import (
    CallAnswered,
    CallCancelled,
    CallOpened,
    CallOrphan,
    CallProgressed,
    ChunkSeen,
    Event,
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
from recorder.health.calls import CallChecks
from recorder.health.config import HealthConfig
from recorder.health.reconnects import ReconnectChecks
from recorder.health.registry import SPEC_VIOLATION
from recorder.health.security import SecurityChecks
from recorder.health.spec.lint import Finding, SpecLint, Validator
from recorder.health.state import ExchangeState, Said
from recorder.model import C2S, Flag

# Events a held message's call event cannot come after: when one arrives, the held message
# got no call event (the correlator had nothing to say about it) and is judged alone.
_CALL_EVENTS = frozenset({CallOpened, CallAnswered, CallProgressed, CallCancelled, CallOrphan})
_KEEPS_HELD = _CALL_EVENTS | {SessionOpened, SessionJoined}


class HealthMonitor(CallChecks, ReconnectChecks, SecurityChecks):
    # CallChecks brings StreamChecks and SessionChecks: answers feed bursts and re-inits.
    """Feed it events in time order (with ticks); it returns the flags each one raised."""

    def __init__(self, config: HealthConfig | None = None, *,
                 validate: Validator | None = None) -> None:
        """`validate` checks params and results against the schema (the shells pass
        recorder.health.spec.schema.validate_message; without it the schema rule is off)."""
        super().__init__(config)
        self._lint = SpecLint(validate)
        self._handlers: dict[type, Callable[[Any], None]] = {
            SessionOpened: self._on_session, SessionJoined: self._on_session_joined,
            RequestSeen: self._on_request, ResponseSeen: self._on_response,
            StreamOpened: self._on_stream_open, ChunkSeen: self._on_chunk, SseSeen: self._on_sse,
            StreamClosed: self._on_stream_close, ExchangeEnded: self._on_exchange_end,
            MessageSeen: self._on_message, CallOpened: self._on_call_opened,
            CallAnswered: self._on_call_answered, CallProgressed: self._call_progressed,
            CallCancelled: self._call_cancelled, CallOrphan: self._on_call_orphan,
            Tick: self._on_tick,
        }

    def observe(self, event: Event) -> list[Flag]:
        self._out = []
        self.now = max(self.now, event.t)
        kind = type(event)
        if self._held is not None and kind not in _KEEPS_HELD:
            self._release_held()
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(event)
        for finding in self._lint.observe(event):
            self._spec_violation(finding)
        return self._out

    def feed(self, events: Iterable[Event]) -> list[Flag]:
        """Every flag raised by a sequence of events (tests, offline checks)."""
        out: list[Flag] = []
        for event in events:
            out += self.observe(event)
        return out

    def finish(self, t: float) -> list[Flag]:
        """End of input: a last tick at `t`; what waited for more input is decided now."""
        flags = self.observe(Tick(t))
        self._out = []
        self._check_cancels(t, final=True)
        return flags + self._out

    def _spec_violation(self, finding: Finding) -> None:
        rule = finding.rule
        self._flag(
            SPEC_VIOLATION, ("spec", rule.id, finding.scope), finding.t,
            f"[{rule.id}] {finding.text} (MCP specification, {rule.section}: {rule.summary}). "
            "Usual cause: an implementation that deviates from the specification",
            session_id=finding.session_id, exchange_id=finding.exchange_id,
            stream_id=finding.stream_id, message_id=finding.message_id, rule=rule.id,
            section=rule.section, versions=list(rule.versions),
        )

    # Sessions and exchanges ------------------------------------------------------------------

    def _on_session(self, e: SessionOpened) -> None:
        session = self._session(e.id)
        assert session is not None
        session.key = e.key
        session.transport = e.transport
        host = (e.client_addr or "").rpartition(":")[0]
        session.client = (host, e.user_agent or "")

    def _on_session_joined(self, e: SessionJoined) -> None:
        ex = self._exchanges.get(e.exchange_id)
        if ex is not None:
            ex.session_id = e.session_id
        stream = self._streams.get(e.stream_id) if e.stream_id is not None else None
        if stream is not None:
            stream.session_id = e.session_id
            if e.stream_role:
                stream.role = e.stream_role

    def _on_request(self, e: RequestSeen) -> None:
        t = e.started_at
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
            client=(client_host, headers.get("user-agent", "")), started_at=t,
            headers=headers, mcp=e.mcp,
            # Ingest sets the session of a request that named it (Mcp-Session-Id or the legacy
            # query); one learned later (initialize, endpoint event) comes with SessionJoined.
            named=e.session_id is not None, session_id=e.session_id,
        )
        self._exchanges[ex.id] = ex
        session = self._sessions.get(ex.session_id or -1)
        if ex.method == "DELETE" and session is not None:
            session.ending = True
        self._check_retry_after(t, ex)
        if ex.method == "GET" and "text/event-stream" in headers.get("accept", ""):
            self._stream_attempt(t, ex)

    def _on_response(self, e: ResponseSeen) -> None:
        ex = self._exchanges.get(e.id)
        if ex is None:
            return
        t = e.t
        ex.status = e.status
        if e.session_id is not None:
            ex.session_id = e.session_id
        if e.mcp:
            ex.mcp = True
        ctype = (e.response_content_type or "").split(";")[0].strip().lower()
        ex.sse = ctype == "text/event-stream"
        headers = e.headers()
        session = self._session(ex.session_id)
        ok = 200 <= ex.status < 300
        if session is not None and ok and ex.named:
            session.ok += 1
            session.last_ok_at = t
            if ex.method == "DELETE":
                session.deleted = True
        if ex.status == 401:
            self._challenged.add(ex.server)
        if ex.status in (429, 503):
            self._rate_limited(t, ex, headers)
        if ex.status >= 400 and ex.method == "POST":
            for call_id in ex.calls:
                call = self._calls.get(call_id)
                if call is not None:
                    call.rejected = ex.status
        if ex.session_id is not None:
            self._check_url(t, ex)
        if ex.mcp:
            self._check_response_security(t, ex, headers, ok)
            if ex.sse and ok:
                self._check_stream_headers(t, ex, headers)

    def _on_exchange_end(self, e: ExchangeEnded) -> None:
        ex = self._exchanges.pop(e.id, None)
        if ex is None:
            return
        t = e.t
        if e.session_id is not None:
            ex.session_id = e.session_id
        if e.mcp:
            ex.mcp = True
        if ex.valid_rpc or ex.mcp:
            self._mcp_paths.add((ex.server, ex.path))
        expected_rpc = ex.valid_rpc or "mcp-session-id" in ex.headers \
            or "mcp-protocol-version" in ex.headers or (ex.server, ex.path) in self._mcp_paths
        answered_ok = ex.status is not None and 200 <= ex.status < 300
        for message in ex.invalid if expected_rpc else ():
            if message.direction == C2S or answered_ok:  # error pages may be any JSON
                self._invalid(message.t, message, ex)
        self._check_session_not_found(t, ex, e.response_body)
        self._check_url(t, ex)  # if the response did not already (its session came late)
        error = e.error
        if ex.stream_reason == "client-disconnect" or (
                error and "client disconnected" in error.lower()):
            self._closed_by_client(t, ex)
        if ex.status is None or error:
            # The carrying connection failed before (or while) answering.
            for call_id in ex.calls:
                call = self._calls.get(call_id)
                if call is not None and call.carrier_closed_at is None:
                    call.carrier_closed_at = t
                    call.carrier_close = f"the HTTP exchange failed: {error or 'no response'}"
        if ex.attempt_key is not None:
            self._attempt_ended(t, ex, error)

    # Messages and their calls ----------------------------------------------------------------

    def _on_message(self, e: MessageSeen) -> None:
        t = e.t
        kind = e.kind
        ex = self._exchanges.get(e.exchange_id) if e.exchange_id is not None else None
        if ex is not None and ex.session_id is None:
            ex.session_id = e.session_id
        stream = self._streams.get(e.stream_id) if e.stream_id else None
        # Messages that are JSON-RPC but break its shape (wrong "jsonrpc", null id, bad
        # error) are the protocol lint's, one rule each; what is not JSON-RPC at all is ours.
        if kind == "invalid":
            if stream is not None:
                if self._speaks_mcp(stream, ex):
                    self._invalid(t, e, ex)
            elif ex is None:
                self._invalid(t, e, ex)
            else:
                ex.invalid.append(e)  # judged at the end, when its HTTP answer is known
            return
        if ex is not None:
            ex.valid_rpc = True
        if stream is not None:
            stream.valid_rpc = True
        said = Said(e, ex, stream)
        if kind == "request":
            if e.rpc_id is not None:
                self._held = said  # its CallOpened follows
        elif kind in ("result", "error"):
            if e.rpc_id is not None:
                self._held = said  # its CallAnswered or CallOrphan follows
            else:
                self._answer(t, said, None, answered=False, first_answer_at=None)
        elif kind == "notification":
            if e.method == "notifications/progress":
                self._progress_said(t, said)
                self._held = said  # CallProgressed or CallOrphan, if it names a token
            elif e.method == "notifications/cancelled":
                self._held = said

    def _release_held(self) -> None:
        """A held message whose call event never came: what it says without a call."""
        said = self._held
        assert said is not None
        self._held = None
        session = self._session(said.message.session_id)
        assert session is not None
        kind = said.message.kind
        if kind == "request":
            self._request_done(said.message.t, said, session)
        elif kind in ("result", "error"):
            self._answer(said.message.t, said, None, answered=False, first_answer_at=None)

    def _request_done(self, t: float, said: Said, session: Any) -> None:
        self._request_said(t, said, session)
        message = said.message
        if message.direction == C2S and message.method == "initialize" \
                and said.exchange is not None:
            self._initialize_attempt(t, said.exchange, session)

    def _on_call_opened(self, e: CallOpened) -> None:
        said = self._take(e.request_message_id)
        self._call_opened(e, said)
        if said is not None:
            session = self._session(e.session_id)
            self._request_done(e.sent_at, said, session)

    def _on_call_answered(self, e: CallAnswered) -> None:
        self._call_answered(e, self._take(e.response_message_id))

    def _on_call_orphan(self, e: CallOrphan) -> None:
        self._call_orphan(e, self._take(e.message_id))

    # The clock -------------------------------------------------------------------------------

    def _on_tick(self, e: Tick) -> None:
        t = self.now
        cfg = self.config
        if self._cancels:
            self._check_cancels(t, final=False)
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
                call_ids = [c for c in tr.calls if c in self._calls]
                session = self._sessions.get(tr.stream.session_id or -1)
                resumed_at = session.resumed.get(tr.stream.lane) if session is not None else None
                if resumed_at is not None and resumed_at >= tr.closed_at:
                    continue  # the client resumed that stream: its answer may still come there
                if call_ids:
                    self._truncated_early(tr.stream, call_ids, tr.closed_at, tr.reason)
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
