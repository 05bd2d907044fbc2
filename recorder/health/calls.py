"""Call detectors: timeouts, cancellations, late, orphan and duplicate answers, errors.

Design notes:
- The pairing is recorder.correlate's. A call is what a `CallOpened` opened, keyed by its
  call id; its answer, progress and cancel arrive as `CallAnswered`, `CallProgressed`,
  `CallCancelled` (or `CallOrphan` for what names nothing open) right after the `MessageSeen`
  that caused them. `CallState` keeps only what the checks add: the deadline, the exchange
  and stream meant to carry the answer, the status that refused the POST, and the cancel as
  the checks count it (from 2026-07-28 closing the response stream also cancels).
- A call event names its message; the message's context (its exchange and stream) is the
  `Said` the monitor holds from the `MessageSeen` until then.
- The correlator pairs within a session. What is an orphan in its own session may be the
  answer another session is waiting for: `_open_ids` and `_open_tokens` (state.py) index the
  open calls of every session for that one question.
"""

from __future__ import annotations

from recorder.correlate import opposite
from recorder.events import (
    CallAnswered,
    CallCancelled,
    CallOpened,
    CallOrphan,
    CallProgressed,
    MessageSeen,
)
from recorder.health.registry import (
    DUPLICATE_ID,
    ERROR_RESPONSE,
    INVALID_MESSAGE,
    LATE_RESPONSE,
    ORPHAN_RESPONSE,
    REQUEST_CANCELLED,
    REQUEST_TIMEOUT,
)
from recorder.health.sessions import SessionChecks
from recorder.health.state import (
    CallState,
    ExchangeState,
    Said,
    SessionState,
    StreamState,
    payload_of,
    secs,
)
from recorder.health.streams import StreamChecks
from recorder.jsonrpc import id_key
from recorder.model import C2S

# The revision from which closing a POST's response stream is how a client cancels.
CLOSE_CANCELS_FROM = "2026-07-28"


class CallChecks(StreamChecks, SessionChecks):
    """Call detectors: timeouts, cancellations, late, orphan and duplicate answers, errors."""

    def _speaks_mcp(self, stream: StreamState, ex: ExchangeState | None) -> bool:
        """Whether an SSE stream is known to carry MCP (any SSE stream passes the proxy)."""
        session = self._sessions.get(stream.session_id or -1)
        return (stream.valid_rpc or stream.role in ("post", "resume")
                or (session is not None and session.key.startswith(("sid:", "legacy")))
                or (ex is not None and (ex.server, ex.path) in self._mcp_paths))

    def _invalid(self, t: float, message: MessageSeen, ex: ExchangeState | None) -> None:
        problem = message.problem or "not a JSON-RPC message"
        where = "SSE data" if message.stream_id else (
            "a POST body" if message.direction == C2S else "a JSON response body")
        place = f" of {ex.method} {ex.path}" if ex is not None else ""
        subject = (message.session_id, message.direction, problem.split(":")[0])
        self._flag(
            INVALID_MESSAGE, subject, t,
            f"{where}{place} is not valid JSON-RPC: {problem}. Usual cause: a client or server "
            "bug, or a proxy or middleware that rewrote the payload",
            session_id=message.session_id, message_id=message.id,
            stream_id=message.stream_id, exchange_id=message.exchange_id,
            problem=problem,
        )

    def _take(self, message_id: int | None) -> Said | None:
        """The held message a call event names (None if it is not the one held)."""
        said = self._held
        if said is None or (message_id is not None and said.message.id != message_id):
            return None
        self._held = None
        return said

    # Requests -------------------------------------------------------------------------------

    def _call_opened(self, e: CallOpened, said: Said | None) -> None:
        session = self._session(e.session_id)
        assert session is not None
        message = said.message if said is not None else None
        ex = said.exchange if said is not None else None
        t = e.sent_at
        if e.replaced is not None:
            # The correlator remembers every id of the session, answered or not: a reused id
            # replaced the call it names. Still open here means still in flight (or cancelled).
            previous = self._calls.get(e.replaced)
            in_flight = previous is not None and previous.cancelled_at is None
            first_at = previous.sent_at if previous is not None else None
            state = "while the first was still in flight" if in_flight else \
                "after the first had completed"
            self._flag(
                DUPLICATE_ID, (session.id, e.direction, in_flight), t,
                f"{e.direction} request id {e.rpc_id} ({e.method}) was reused in session "
                f"#{session.id} {state}"
                f"{f' (sent {secs(t - first_at)} earlier)' if first_at is not None else ''}; "
                "ids must be unique per sender and session, or answers get cross-wired. "
                "Usual cause: a client that restarts its counter or shares a session",
                severity="error" if in_flight else "warning", session_id=session.id,
                message_id=e.request_message_id, call_id=e.id,
                exchange_id=message.exchange_id if message is not None else None,
                stream_id=message.stream_id if message is not None else None,
                in_flight=in_flight,
            )
            self._close_call(e.replaced)
        call = CallState(
            call_id=e.id, session=session.id, direction=e.direction, rpc_id=e.rpc_id,
            method=e.method, name=e.name, message_id=e.request_message_id,
            exchange_id=message.exchange_id if message is not None else None, sent_at=t,
            deadline=self.config.timeout_for(e.method), progress_token=e.progress_token,
        )
        self._open_call(call)
        if e.direction == C2S and ex is not None and message is not None \
                and message.stream_id is None:
            ex.calls.append(call.call_id)
            call.stream_id = ex.stream_id
            if ex.status is not None and ex.status >= 400:
                call.rejected = ex.status  # e.g. the POST before a legacy GET fallback

    def _request_said(self, t: float, said: Said, session: SessionState) -> None:
        """What a request says about its stream and session, whatever its call."""
        message, stream = said.message, said.stream
        method = message.method or ""
        if stream is not None and method == "ping":
            self._heartbeat(stream, t)
        if message.direction == C2S:
            if method not in ("initialize", "ping"):
                session.work += 1
            # 2026-07-28 has no handshake: `server/discover` (or nothing) starts a session, and
            # a v2 client over legacy SSE sends it on the new endpoint instead of initialize.
            if method in ("initialize", "server/discover"):
                session.initialized = True
                self._reinitialized[session.client] = t
                if said.exchange is not None:
                    self._reinitialized[said.exchange.client] = t
            elif method != "ping" and session.fresh_legacy and not session.initialized:
                self._reinit_missing(t, message, session, method)

    # Progress and cancellation --------------------------------------------------------------

    def _progress_said(self, t: float, said: Said) -> None:
        stream = said.stream
        if stream is None or not self._in_burst(stream, t):
            return
        payload = payload_of(said.message)
        params = payload.get("params") if isinstance(payload, dict) else None
        if isinstance(params, dict) and "progressToken" in params:
            stream.burst_progress += 1

    def _call_progressed(self, e: CallProgressed) -> None:
        call = self._calls.get(e.call_id)
        if call is not None:
            call.progress = e.progress_count
            call.last_progress_at = e.t

    def _unknown_progress(self, t: float, said: Said, session: SessionState) -> None:
        """Progress for no open call of its session: perhaps another session's token."""
        payload = payload_of(said.message)
        params = payload.get("params") if isinstance(payload, dict) else None
        if isinstance(params, dict) and "progressToken" in params:
            self._foreign_progress(t, said.message, session, said.message.direction,
                                   said.stream, id_key(params["progressToken"]))

    def _call_cancelled(self, e: CallCancelled) -> None:
        call = self._calls.get(e.call_id)
        if call is None or call.cancelled_at is not None:
            return
        t = e.t
        call.cancelled_at = t
        call.cancel_reason = e.cancel_reason
        waited = t - call.sent_at
        # Past the deadline it is a timeout (the tick may not have seen it yet); before
        # it, a cancel is the client's own decision, whatever SDK sent it and whatever
        # its reason says: `request-cancelled`, raised once the answer came or the grace
        # for one passed.
        if call.deadline > 0 and waited >= call.deadline:
            why = f" (reason {call.cancel_reason!r})" if call.cancel_reason else ""
            self._flag(
                REQUEST_TIMEOUT, (call.session, call.direction, call.rpc_id, call.message_id),
                t, f"{call.label} was cancelled by the client after {secs(waited)} without "
                f"a response{why}, past the {secs(call.deadline)} deadline. Usual cause: a "
                "slow or hung tool, or a response lost on the way",
                session_id=call.session, call_id=call.call_id,
                message_id=call.message_id, exchange_id=call.exchange_id,
                waited=round(waited, 3), deadline=call.deadline, state="cancelled",
            )
            return
        self._cancels.append(call)

    def _closed_by_client(self, t: float, ex: ExchangeState | None) -> None:
        """From 2026-07-28, a client closing a request's response stream cancels it."""
        if ex is None or ex.headers.get("mcp-protocol-version", "") < CLOSE_CANCELS_FROM:
            return
        for key in ex.calls:
            call = self._calls.get(key)
            if call is None or call.cancelled_at is not None:
                continue
            call.cancelled_at = t
            call.cancel_reason = "the client closed the response stream"
            if call.deadline > 0 and t - call.sent_at >= call.deadline:
                continue  # already past the deadline: the tick reports the timeout
            self._cancels.append(call)

    def _cancelled(self, t: float, call: CallState, answered_at: float | None,
                   answer: str | None) -> None:
        """A call cancelled before its deadline: information, with what became of it."""
        assert call.cancelled_at is not None
        waited = call.cancelled_at - call.sent_at
        why = f" with reason {call.cancel_reason!r}" if call.cancel_reason else " (no reason)"
        if answered_at is not None:
            after = (f"; {answer} still came {secs(answered_at - call.cancelled_at)} after the "
                     "cancel")
        else:
            after = f"; no answer came within {secs(t - call.cancelled_at)}"
        self._flag(
            REQUEST_CANCELLED, (call.session, call.direction, call.rpc_id, call.message_id),
            call.cancelled_at,
            f"{call.label} was cancelled by its client after {secs(waited)}{why}, before the "
            f"{secs(call.deadline) + ' ' if call.deadline > 0 else ''}deadline{after}. Usual "
            "cause: a client-side timeout or a user who gave up",
            session_id=call.session, call_id=call.call_id, message_id=call.message_id,
            exchange_id=call.exchange_id, waited=round(waited, 3),
            reason=call.cancel_reason, answered=answered_at is not None,
        )

    def _check_cancels(self, t: float, final: bool) -> None:
        """Cancelled calls whose grace for an answer has passed (or the input ended)."""
        grace = self.config.cancel_grace
        due = [c for c in self._cancels
               if final or t - (c.cancelled_at or t) >= grace]
        if not due:
            return
        self._cancels = [c for c in self._cancels if all(c is not d for d in due)]
        for call in due:
            self._cancelled(t, call, None, None)

    # Answers --------------------------------------------------------------------------------

    def _call_answered(self, e: CallAnswered, said: Said | None) -> None:
        self._answered_at.setdefault(e.call_id, e.t)
        call = self._close_call(e.call_id)
        if said is not None:
            self._answer(e.t, said, call, answered=True, first_answer_at=None)

    def _call_orphan(self, e: CallOrphan, said: Said | None) -> None:
        if said is None:
            return
        session = self._session(e.session_id)
        assert session is not None
        if e.what == "orphan":
            first = self._answered_at.get(e.call_id) if e.call_id is not None else None
            self._answer(e.t, said, None, answered=False, first_answer_at=first)
        elif e.what == "progress-unknown":
            self._unknown_progress(e.t, said, session)
        # "cancel-unknown": a cancel for a call already answered (or never made) changes nothing

    def _answer(self, t: float, said: Said, call: CallState | None, *, answered: bool,
                first_answer_at: float | None) -> None:
        """A result or error: `call` is the open call it answered (None: none of this
        session's, `answered` True if the correlator paired it with one the checks dropped)."""
        row, ex, stream = said.message, said.exchange, said.stream
        session = self._session(row.session_id)
        assert session is not None
        direction = row.direction
        rpc_id = row.rpc_id
        kind = row.kind
        payload = payload_of(row)
        http_error = ex is not None and ex.status is not None and ex.status >= 400
        if kind == "error":
            error = payload.get("error") if isinstance(payload, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            if isinstance(text, str) and ex is not None:
                ex.error_texts.append(text)
            if call is not None:
                what = f"{call.label} failed after {secs(t - call.sent_at)} with"
            elif http_error and ex is not None:
                what = f"the HTTP {ex.status} answer to {ex.method} {ex.path} carried"
            else:
                what = f"a response with id {rpc_id} carried"
            self._flag(
                ERROR_RESPONSE, (session.id, call.method if call else None, code), t,
                f"{what} JSON-RPC error {code} {text!r}",
                session_id=session.id, message_id=row.id,
                call_id=call.call_id if call else row.call_id,
                exchange_id=row.exchange_id, stream_id=row.stream_id,
                code=code, error_message=text,
            )
        if rpc_id is not None:
            self._note_answer(t, session, opposite(direction), rpc_id, row.json)
        if call is None:
            if answered or rpc_id is None or rpc_id in ("null", '"server-error"') or http_error:
                return  # paired with a call the checks no longer hold, or a transport error
            if self._foreign_answer(t, row, session, direction, stream):
                return  # another session's answer: not an orphan of this one
            if first_answer_at is not None:
                text = (f"a second response to {opposite(direction)} request {rpc_id} arrived "
                        f"{secs(t - first_answer_at)} after the first (duplicate delivery)")
            else:
                text = (f"a response with id {rpc_id} matches no request sent in session "
                        f"#{session.id}")
            where = f" on {stream.label()}" if stream is not None else ""
            self._flag(
                ORPHAN_RESPONSE, ("message", row.id), t,
                f"{text}{where}; clients log 'unknown message ID' and may reconnect. Usual "
                "cause: a response routed to the wrong session or stream, or replayed twice",
                session_id=session.id, message_id=row.id, stream_id=row.stream_id,
                exchange_id=row.exchange_id,
            )
            return
        if call.cancelled_at is not None:
            if any(c is call for c in self._cancels):
                self._cancels = [c for c in self._cancels if c is not call]
                self._cancelled(t, call, t, "an error" if kind == "error" else "a result")
            self._flag(
                LATE_RESPONSE, (session.id, call.direction, call.rpc_id, call.message_id), t,
                f"{'an error' if kind == 'error' else 'a result'} for {call.label} arrived "
                f"{secs(t - call.cancelled_at)} after the client cancelled it; a receiver "
                "should not answer a cancelled request and the client will drop it. Usual "
                "cause: a server that answers cancellations (python-sdk sends 'Request "
                "cancelled'), or a cancel racing the result",
                session_id=session.id, message_id=row.id, call_id=call.call_id,
                stream_id=row.stream_id, exchange_id=row.exchange_id,
                after_cancel=round(t - call.cancelled_at, 3),
            )
        if stream is not None and stream.burst_started is not None and self._in_burst(stream, t) \
                and call.sent_at >= stream.burst_started - stream.burst_silence:
            stream.burst_explained = True  # the tool was working: the silence is explained

    def _overdue(self, t: float, call: CallState) -> None:
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
            text = (f"{call.label} has no response after {secs(waited)} but received "
                    f"{call.progress} progress notification{'s' if call.progress != 1 else ''}, "
                    f"the last {secs(since)} ago: slow, not hung. Usual cause: a long-running "
                    "tool; raise the deadline for it, or make the tool return sooner")
        elif call.carrier_closed_at is not None:
            state = "stream-closed"
            text = (f"{call.label} got no response within {secs(call.deadline)}: "
                    f"{call.carrier_close} {secs(call.carrier_closed_at - call.sent_at)} after "
                    "the request, and no response came on any other stream. Usual cause: a "
                    "proxy or server timeout cutting the stream, or a server that lost the request")
        else:
            state = "pending"
            text = (f"{call.label} got no response, progress or cancellation within "
                    f"{secs(call.deadline)} (still pending {secs(waited)} after the request). "
                    "Usual cause: a hung tool or handler, or a response lost on the way")
        self._flag(
            REQUEST_TIMEOUT, subject, t, text, severity=severity, session_id=call.session,
            call_id=call.call_id, message_id=call.message_id, exchange_id=call.exchange_id,
            stream_id=call.stream_id, waited=round(waited, 3), deadline=call.deadline,
            state=state, progress=call.progress or None,
        )
