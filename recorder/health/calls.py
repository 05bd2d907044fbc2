"""Call detectors: timeouts, cancellations, late, orphan and duplicate answers, errors."""

from __future__ import annotations

from typing import Any

from recorder.correlate import call_name, opposite
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
    SessionState,
    StreamState,
    json_or_none,
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

    def _invalid(self, t: float, row: dict[str, Any], ex: ExchangeState | None) -> None:
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

    def _request(self, t: float, row: dict[str, Any], session: SessionState, direction: str,
                 ex: ExchangeState | None, stream: StreamState | None) -> None:
        method = str(row.get("method") or "")
        rpc_id = row.get("rpc_id")
        if rpc_id is None:
            return
        payload = json_or_none(row.get("json"))
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
                f"{f' (sent {secs(t - first_at)} earlier)' if first_at is not None else ''}; "
                "ids must be unique per sender and session, or answers get cross-wired. "
                "Usual cause: a client that restarts its counter or shares a session",
                severity="error" if in_flight else "warning", session_id=session.id,
                message_id=row.get("id"), call_id=row.get("call_id"),
                exchange_id=row.get("exchange_id"), stream_id=row.get("stream_id"),
                in_flight=in_flight,
            )
            if previous is not None:
                self._progress.pop((session.id, direction, previous.progress_token or ""), None)
        name = call_name(method, params)  # the correlator's name for it, as `show` prints
        token = None
        if isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                token = id_key(meta["progressToken"])
        call = CallState(
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
            if method not in ("initialize", "ping"):
                session.work += 1
            # 2026-07-28 has no handshake: `server/discover` (or nothing) starts a session, and
            # a v2 client over legacy SSE sends it on the new endpoint instead of initialize.
            if method in ("initialize", "server/discover"):
                session.initialized = True
                self._reinitialized[session.client] = t
                if ex is not None:
                    self._reinitialized[ex.client] = t
            elif method != "ping" and session.fresh_legacy and not session.initialized:
                self._reinit_missing(t, row, session, method)

    def _notification(self, t: float, row: dict[str, Any], session: SessionState, direction: str,
                      stream: StreamState | None) -> None:
        method = row.get("method")
        if method not in ("notifications/progress", "notifications/cancelled"):
            return
        payload = json_or_none(row.get("json"))
        params = payload.get("params") if isinstance(payload, dict) else None
        if not isinstance(params, dict):
            return
        if method == "notifications/progress" and "progressToken" in params:
            key = self._progress.get((session.id, opposite(direction),
                                      id_key(params["progressToken"])))
            call = self._calls.get(key) if key is not None else None
            if key is None:
                self._foreign_progress(t, row, session, direction, stream,
                                       id_key(params["progressToken"]))
            if call is not None:
                call.progress += 1
                call.last_progress_at = t
            if stream is not None and self._in_burst(stream, t):
                stream.burst_progress += 1
        elif method == "notifications/cancelled" and "requestId" in params:
            call = self._calls.get((session.id, direction, id_key(params["requestId"])))
            if call is None or call.cancelled_at is not None:
                return
            call.cancelled_at = t
            reason = params.get("reason")
            call.cancel_reason = reason if isinstance(reason, str) else None
            waited = t - call.sent_at
            # Past the deadline it is a timeout (the tick may not have seen it yet); before
            # it, a cancel is the client's own decision, whatever SDK sent it and whatever
            # its reason says: `request-cancelled`, raised once the answer came or the grace
            # for one passed.
            if call.deadline > 0 and waited >= call.deadline:
                why = f" (reason {call.cancel_reason!r})" if call.cancel_reason else ""
                self._flag(
                    REQUEST_TIMEOUT, (session.id, call.direction, call.rpc_id, call.message_id),
                    t, f"{call.label} was cancelled by the client after {secs(waited)} without "
                    f"a response{why}, past the {secs(call.deadline)} deadline. Usual cause: a "
                    "slow or hung tool, or a response lost on the way",
                    session_id=session.id, call_id=call.call_id,
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

    def _response(self, t: float, row: dict[str, Any], session: SessionState, direction: str,
                  ex: ExchangeState | None, stream: StreamState | None) -> None:
        rpc_id = row.get("rpc_id")
        kind = row.get("kind")
        payload = json_or_none(row.get("json"))
        key = (session.id, opposite(direction), str(rpc_id))
        call = self._calls.pop(key, None) if rpc_id is not None else None
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
                session_id=session.id, message_id=row.get("id"),
                call_id=call.call_id if call else row.get("call_id"),
                exchange_id=row.get("exchange_id"), stream_id=row.get("stream_id"),
                code=code, error_message=text,
            )
        if rpc_id is not None:
            self._note_answer(t, session, opposite(direction), str(rpc_id), row.get("json"))
        if call is None:
            if rpc_id is None or rpc_id in ("null", '"server-error"') or http_error:
                return  # transport-level errors carry no usable id
            if self._foreign_answer(t, row, session, direction, stream):
                return  # another session's answer: not an orphan of this one
            answered_at = session.answered.get((opposite(direction), str(rpc_id)))
            if answered_at is not None:
                text = (f"a second response to {opposite(direction)} request {rpc_id} arrived "
                        f"{secs(t - answered_at)} after the first (duplicate delivery)")
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
                session_id=session.id, message_id=row.get("id"), call_id=call.call_id,
                stream_id=row.get("stream_id"), exchange_id=row.get("exchange_id"),
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
