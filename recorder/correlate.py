"""Pair JSON-RPC requests with their responses, progress and cancellations, per session.

Design notes:
- A call is keyed by (session, direction of the request, id with its JSON type). Responses are
  matched wherever they travel: another HTTP connection, a resumed GET, the legacy GET stream.
  The HTTP exchange plays no part in the match; only the session does.
- Each direction numbers its ids independently (both SDKs count from 0), hence the direction
  in the key: a client request 1 and a server request 1 are different calls.
- Progress notifications travel opposite to the request they report on and name its
  `progressToken`; cancellations travel in the request's own direction and name its id.
- A response to a cancelled call still completes it, marked late. A response matching nothing
  outstanding is an orphan. Both are reported to the caller, which decides what to flag.
- Values in, values out: the caller passes times and gets typed call events back
  (recorder.events); the store and the checks both read the pairing from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recorder.events import (
    CallAnswered,
    CallCancelled,
    CallOpened,
    CallOrphan,
    CallProgressed,
)
from recorder.jsonrpc import error_fields, id_key
from recorder.model import (
    C2S,
    ERROR,
    NOTIFICATION,
    OUTCOME_CANCELLED,
    OUTCOME_ERROR,
    OUTCOME_PENDING,
    OUTCOME_RESULT,
    REQUEST,
    RESULT,
    S2C,
    RpcMessage,
)

CallEvent = CallOpened | CallAnswered | CallProgressed | CallCancelled | CallOrphan


def opposite(direction: str) -> str:
    return S2C if direction == C2S else C2S


def call_name(method: str | None, params: Any) -> str | None:
    """What a call is about, for humans: the tool, prompt or resource it names."""
    if not isinstance(params, dict):
        return None
    if method in ("tools/call", "prompts/get"):
        name = params.get("name")
        return name if isinstance(name, str) else None
    if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        uri = params.get("uri")
        return uri if isinstance(uri, str) else None
    return None


@dataclass(slots=True)
class Call:
    """An outstanding or finished request, as the correlator tracks it."""

    call_id: int
    session: int
    direction: str
    rpc_id: str
    method: str
    sent_at: float
    request_message_id: int
    progress_token: str | None
    outcome: str = OUTCOME_PENDING
    answered_at: float | None = None
    cancelled_at: float | None = None
    progress_count: int = 0
    last_progress_at: float | None = None


@dataclass(frozen=True, slots=True)
class Correlation:
    """What one message meant for the calls of its session.

    `call` is the call the message belongs to (None for unrelated notifications and orphans);
    `event` is the typed call event it caused (recorder.events: `CallOpened`, `CallAnswered`,
    `CallProgressed`, `CallCancelled`, or `CallOrphan` for an answer, cancel or progress that
    names nothing outstanding), None when it touched no call.
    """

    call: Call | None
    event: CallEvent | None = None

    @property
    def new(self) -> bool:
        return isinstance(self.event, CallOpened)


class Correlator:
    """Tracks calls across every session of a capture."""

    def __init__(self) -> None:
        self._calls: dict[tuple[int, str, str], Call] = {}
        self._progress: dict[tuple[int, str, str], Call] = {}

    def observe(
        self,
        session: int,
        direction: str,
        message: RpcMessage,
        t: float,
        message_id: int,
        new_call_id: int,
    ) -> Correlation:
        """Account for one message; `new_call_id` is used only if the message opens a call."""
        if message.kind == REQUEST and message.id_key is not None and message.method:
            return self._request(session, direction, message, t, message_id, new_call_id)
        if message.kind in (RESULT, ERROR) and message.id_key is not None:
            return self._response(session, direction, message, t, message_id)
        if message.kind == NOTIFICATION and isinstance(message.payload, dict):
            params = message.payload.get("params")
            if not isinstance(params, dict):
                return Correlation(None)
            if message.method == "notifications/progress" and "progressToken" in params:
                return self._progress_note(session, direction, params, t, message_id)
            if message.method == "notifications/cancelled" and "requestId" in params:
                return self._cancel(session, direction, params, t, message_id)
        return Correlation(None)

    def _request(
        self, session: int, direction: str, message: RpcMessage, t: float, message_id: int,
        new_call_id: int,
    ) -> Correlation:
        assert message.id_key is not None and message.method is not None
        key = (session, direction, message.id_key)
        previous = self._calls.get(key)
        params = message.payload.get("params") if isinstance(message.payload, dict) else None
        token = None
        if isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                token = id_key(meta["progressToken"])
        call = Call(new_call_id, session, direction, message.id_key, message.method, t,
                    message_id, token)
        self._calls[key] = call
        if token is not None:
            self._progress[(session, direction, token)] = call
        return Correlation(call, CallOpened(
            new_call_id, session, direction, message.id_key, message.method,
            call_name(message.method, params), message_id, t, OUTCOME_PENDING, token,
            previous.call_id if previous is not None else None))

    def _response(
        self, session: int, direction: str, message: RpcMessage, t: float, message_id: int
    ) -> Correlation:
        assert message.id_key is not None
        call = self._calls.get((session, opposite(direction), message.id_key))
        if call is None or call.answered_at is not None:
            return Correlation(None, CallOrphan(t, session, message_id, "orphan",
                                                call.call_id if call is not None else None))
        call.answered_at = t
        latency = round((t - call.sent_at) * 1000.0, 3)
        late = call.outcome == OUTCOME_CANCELLED
        code = text = None
        if message.kind == ERROR:
            code, text = error_fields(message.payload)
        if not late:
            call.outcome = OUTCOME_ERROR if message.kind == ERROR else OUTCOME_RESULT
        if call.progress_token is not None:
            self._progress.pop((session, call.direction, call.progress_token), None)
        return Correlation(call, CallAnswered(t, call.call_id, session, message_id, latency,
                                              None if late else call.outcome, code, text, late))

    def _progress_note(
        self, session: int, direction: str, params: dict[str, Any], t: float, message_id: int
    ) -> Correlation:
        token = id_key(params["progressToken"])
        call = self._progress.get((session, opposite(direction), token))
        if call is None:
            return Correlation(None, CallOrphan(t, session, message_id, "progress-unknown"))
        call.progress_count += 1
        call.last_progress_at = t
        return Correlation(call, CallProgressed(t, call.call_id, session, call.progress_count))

    def _cancel(
        self, session: int, direction: str, params: dict[str, Any], t: float, message_id: int
    ) -> Correlation:
        call = self._calls.get((session, direction, id_key(params["requestId"])))
        if call is None or call.answered_at is not None:
            return Correlation(call, CallOrphan(t, session, message_id, "cancel-unknown",
                                                call.call_id if call is not None else None))
        call.outcome = OUTCOME_CANCELLED
        call.cancelled_at = t
        reason = params.get("reason")
        return Correlation(call, CallCancelled(t, call.call_id, session, message_id,
                                               reason if isinstance(reason, str) else None))
