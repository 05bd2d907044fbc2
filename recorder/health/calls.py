"""Call detectors: timeouts, cancellations, late, orphan and duplicate answers, errors.

Design notes:
- The pairing is recorder.correlate's. A call is what a `CallOpened` opened, keyed by its
  call id; its answer, progress and cancel arrive as `CallAnswered`, `CallProgressed`,
  `CallCancelled` (or `CallOrphan` for what names nothing open) right after the `MessageSeen`
  that caused them. The call's `CallState` (context.py) keeps only what the checks add: the
  deadline, the exchange and stream meant to carry the answer, the status that refused the
  POST, and the cancel as the checks count it (from 2026-07-28 closing the stream cancels).
- A call event names its message; the message's exchange and stream are the context's
  `said`. An answer waits for its call event to know its call (its label, whether it is
  late); if none comes, it is judged as one the correlator could not pair.
- The correlator pairs within a session. Before calling an answer an orphan, the session
  detector is asked whether it is another session's (cross-session delivery).
- Deadlines are checked on ticks, never with timers; a cancel before the deadline is
  information, reported once the answer came or `cancel_grace` passed without one.
"""

from __future__ import annotations

from recorder.correlate import opposite
from recorder.events import (
    CallAnswered,
    CallCancelled,
    CallOpened,
    CallOrphan,
    ExchangeEnded,
    MessageSeen,
    ResponseSeen,
)
from recorder.health.context import Context, Detector
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
    StreamState,
    payload_of,
    secs,
)
from recorder.model import C2S

# The revision from which closing a POST's response stream is how a client cancels.
CLOSE_CANCELS_FROM = "2026-07-28"



class CallChecks(Detector):
    """Call detectors: timeouts, cancellations, late, orphan and duplicate answers, errors."""

    HANDLES = {MessageSeen: "_on_message", ResponseSeen: "_on_response",
               ExchangeEnded: "_on_exchange_end", CallOpened: "_on_call_opened",
               CallAnswered: "_on_call_answered", CallCancelled: "_on_call_cancelled",
               CallOrphan: "_on_call_orphan"}

    def __init__(self, ctx: Context, isolation: SessionChecks) -> None:
        super().__init__(ctx)
        self._isolation = isolation  # tells another session's answer from an orphan
        self._cancels: list[CallState] = []  # cancelled before the deadline, unresolved
        self.awaiting: Said | None = None  # an answer until its call event comes

    def tick(self, t: float) -> None:
        if self._cancels:
            self._check_cancels(t, final=False)
        for call in list(self.ctx.calls.values()):
            if call.deadline > 0 and t - call.sent_at >= call.deadline:
                self._overdue(t, call)

    def finish(self, t: float) -> None:
        """End of input: cancelled calls are reported without waiting out their grace."""
        self.settle()
        self._check_cancels(t, final=True)

    def settle(self) -> None:
        """An answer still waiting for its call event when the next message (or the end)
        comes got none: it is judged as one the correlator could not pair. (Ticks may come
        in between, e.g. from a live checker catching up; they do not settle it.)"""
        said = self.awaiting
        if said is not None:
            self.awaiting = None
            self._answer(said.message.t, said, None, answered=False, first_answer_at=None)

    # Exchanges ------------------------------------------------------------------------------

    def _on_response(self, e: ResponseSeen) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is not None and e.status >= 400 and ex.method == "POST":
            for call_id in ex.calls:
                call = self.ctx.calls.get(call_id)
                if call is not None:
                    call.rejected = e.status  # refused: not pending, never a timeout

    def _on_exchange_end(self, e: ExchangeEnded) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is None:
            return
        t = e.t
        expected_rpc = ex.valid_rpc or "mcp-session-id" in ex.headers \
            or "mcp-protocol-version" in ex.headers or (ex.server, ex.path) in self.ctx.mcp_paths
        answered_ok = ex.status is not None and 200 <= ex.status < 300
        for message in ex.invalid if expected_rpc else ():
            if message.direction == C2S or answered_ok:  # error pages may be any JSON
                self._invalid(message.t, message, ex)
        error = e.error
        if ex.stream_reason == "client-disconnect" or (
                error and "client disconnected" in error.lower()):
            self._closed_by_client(t, ex)
        if ex.status is None or error:
            # The carrying connection failed before (or while) answering.
            for call_id in ex.calls:
                call = self.ctx.calls.get(call_id)
                if call is not None and call.carrier_closed_at is None:
                    call.carrier_closed_at = t
                    call.carrier_close = f"the HTTP exchange failed: {error or 'no response'}"

    # Messages -------------------------------------------------------------------------------

    def _on_message(self, e: MessageSeen) -> None:
        if self.awaiting is not None:  # settle() has nothing to do unless an answer waits
            self.settle()
        said = self.ctx.said_for(e.id)
        assert said is not None
        ex, stream = said.exchange, said.stream
        # Messages that are JSON-RPC but break its shape (wrong "jsonrpc", null id, bad
        # error) are the protocol lint's, one rule each; what is not JSON-RPC at all is ours.
        if e.kind == "invalid":
            if stream is not None:
                if self._speaks_mcp(stream, ex):
                    self._invalid(e.t, e, ex)
            elif ex is None:
                self._invalid(e.t, e, ex)
            else:
                ex.invalid.append(e)  # judged at the end, when its HTTP answer is known
        elif e.kind in ("result", "error"):
            if e.rpc_id is not None:
                self.awaiting = said  # its CallAnswered or CallOrphan follows
            else:
                self._answer(e.t, said, None, answered=False, first_answer_at=None)

    def _take(self, message_id: int) -> Said | None:
        said = self.awaiting
        if said is None or said.message.id != message_id:
            return None
        self.awaiting = None
        return said

    def _speaks_mcp(self, stream: StreamState, ex: ExchangeState | None) -> bool:
        """Whether an SSE stream is known to carry MCP (any SSE stream passes the proxy)."""
        session = self.ctx.sessions.get(stream.session_id or -1)
        return (stream.valid_rpc or stream.role in ("post", "resume")
                or (session is not None and session.key.startswith(("sid:", "legacy")))
                or (ex is not None and (ex.server, ex.path) in self.ctx.mcp_paths))

    def _invalid(self, t: float, message: MessageSeen, ex: ExchangeState | None) -> None:
        problem = message.problem or "not a JSON-RPC message"
        where = "SSE data" if message.stream_id else (
            "a POST body" if message.direction == C2S else "a JSON response body")
        place = f" of {ex.method} {ex.path}" if ex is not None else ""
        subject = (message.session_id, message.direction, problem.split(":")[0])
        self.ctx.flag(
            INVALID_MESSAGE, subject, t,
            f"{where}{place} is not valid JSON-RPC: {problem}. Usual cause: a client or server "
            "bug, or a proxy or middleware that rewrote the payload",
            session_id=message.session_id, message_id=message.id,
            stream_id=message.stream_id, exchange_id=message.exchange_id,
            problem=problem,
        )

    # Requests -------------------------------------------------------------------------------

    def _on_call_opened(self, e: CallOpened) -> None:
        if e.replaced is None:
            return
        # The correlator remembers every id of the session, answered or not: a reused id
        # replaced the call it names. Still open here means still in flight (or cancelled).
        said = self.ctx.said_for(e.request_message_id)
        message = said.message if said is not None else None
        t = e.sent_at
        previous = self.ctx.calls.get(e.replaced)
        in_flight = previous is not None and previous.cancelled_at is None
        first_at = previous.sent_at if previous is not None else None
        state = "while the first was still in flight" if in_flight else \
            "after the first had completed"
        self.ctx.flag(
            DUPLICATE_ID, (e.session_id, e.direction, in_flight), t,
            f"{e.direction} request id {e.rpc_id} ({e.method}) was reused in session "
            f"#{e.session_id} {state}"
            f"{f' (sent {secs(t - first_at)} earlier)' if first_at is not None else ''}; "
            "ids must be unique per sender and session, or answers get cross-wired. "
            "Usual cause: a client that restarts its counter or shares a session",
            severity="error" if in_flight else "warning", session_id=e.session_id,
            message_id=e.request_message_id, call_id=e.id,
            exchange_id=message.exchange_id if message is not None else None,
            stream_id=message.stream_id if message is not None else None,
            in_flight=in_flight,
        )

    def _on_call_cancelled(self, e: CallCancelled) -> None:
        call = self.ctx.calls.get(e.call_id)
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
            self.ctx.flag(
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
            call = self.ctx.calls.get(key)
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
        self.ctx.flag(
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

    def _on_call_answered(self, e: CallAnswered) -> None:
        said = self._take(e.response_message_id)
        if said is not None:  # the context forgets the call after every detector saw this
            self._answer(e.t, said, self.ctx.calls.get(e.call_id), answered=True,
                         first_answer_at=None)

    def _on_call_orphan(self, e: CallOrphan) -> None:
        said = self._take(e.message_id)
        if said is not None and e.what == "orphan":
            first = self.ctx.answered_at.get(e.call_id) if e.call_id is not None else None
            self._answer(e.t, said, None, answered=False, first_answer_at=first)
        # "cancel-unknown": a cancel for a call already answered (or never made) changes
        # nothing; "progress-unknown" is the session detector's (another session's token?)

    def _answer(self, t: float, said: Said, call: CallState | None, *, answered: bool,
                first_answer_at: float | None) -> None:
        """A result or error: `call` is the open call it answered (None: none of this
        session's, `answered` True if the correlator paired it with one the checks dropped)."""
        row, ex, stream = said.message, said.exchange, said.stream
        session = self.ctx.session(row.session_id)
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
            if call is not None:
                what = f"{call.label} failed after {secs(t - call.sent_at)} with"
            elif http_error and ex is not None:
                what = f"the HTTP {ex.status} answer to {ex.method} {ex.path} carried"
            else:
                what = f"a response with id {rpc_id} carried"
            self.ctx.flag(
                ERROR_RESPONSE, (session.id, call.method if call else None, code), t,
                f"{what} JSON-RPC error {code} {text!r}",
                session_id=session.id, message_id=row.id,
                call_id=call.call_id if call else row.call_id,
                exchange_id=row.exchange_id, stream_id=row.stream_id,
                code=code, error_message=text,
            )
        if rpc_id is not None:
            self._isolation.note_answer(t, session, opposite(direction), rpc_id, row.json)
        if call is None:
            if answered or rpc_id is None or rpc_id in ("null", '"server-error"') or http_error:
                return  # paired with a call the checks no longer hold, or a transport error
            if self._isolation.foreign_answer(t, row, session, direction, stream):
                return  # another session's answer: not an orphan of this one
            if first_answer_at is not None:
                text = (f"a second response to {opposite(direction)} request {rpc_id} arrived "
                        f"{secs(t - first_answer_at)} after the first (duplicate delivery)")
            else:
                text = (f"a response with id {rpc_id} matches no request sent in session "
                        f"#{session.id}")
            where = f" on {stream.label()}" if stream is not None else ""
            self.ctx.flag(
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
            self.ctx.flag(
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

    def _overdue(self, t: float, call: CallState) -> None:
        subject = (call.session, call.direction, call.rpc_id, call.message_id)
        if (REQUEST_TIMEOUT, *subject) in self.ctx.fired:
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
        self.ctx.flag(
            REQUEST_TIMEOUT, subject, t, text, severity=severity, session_id=call.session,
            call_id=call.call_id, message_id=call.message_id, exchange_id=call.exchange_id,
            stream_id=call.stream_id, waited=round(waited, 3), deadline=call.deadline,
            state=state, progress=call.progress or None,
        )
