"""Session detectors: lost sessions, missing re-initialize, cross-session delivery."""

from __future__ import annotations

from typing import Any

from recorder.correlate import opposite
from recorder.events import MessageSeen
from recorder.health.registry import CROSS_SESSION_DELIVERY, REINIT_MISSING, SESSION_NOT_FOUND
from recorder.health.state import (
    DetectorState,
    ExchangeState,
    SessionState,
    StreamState,
    secs,
)

# How far apart two deliveries of one answer may be to count as one broadcast.
CROSS_SESSION_WINDOW = 10.0


class SessionChecks(DetectorState):
    """Session detectors: lost sessions, missing re-initialize, cross-session delivery."""

    def _reinit_missing(self, t: float, row: MessageSeen, session: SessionState,
                        method: str) -> None:
        earlier = [s for s in self._sessions.values()
                   if s.id < session.id and s.transport == "sse" and s.client == session.client]
        before = f" after this client's session #{earlier[-1].id}" if earlier else ""
        self._flag(
            REINIT_MISSING, (session.id,), t,
            f"legacy session #{session.id} (a new endpoint from the GET stream{before}) received "
            f"{method} without any initialize; the server will reject it ('Received request "
            "before initialization was complete'). Usual cause: an EventSource that reconnected "
            "by itself and a client that switched to the new endpoint without re-initializing",
            session_id=session.id, message_id=row.id, call_id=row.call_id,
            exchange_id=row.exchange_id,
        )

    def _check_session_not_found(self, t: float, ex: ExchangeState, body: bytes | None) -> None:
        if ex.status not in (400, 404) or not ex.named:
            return
        if ex.status == 400:
            texts = " ".join(ex.error_texts).lower()
            if body:
                texts += " " + body.decode("utf-8", "replace").lower()
            if "session" not in texts:
                return
        session = self._session(ex.session_id)
        if session is None:
            return
        session.not_found += 1
        if session.not_found_at is None:
            session.not_found_at = t
        if session.deleted:
            return
        if session.ok > 0 and session.last_ok_at is not None:
            self._flag(
                SESSION_NOT_FOUND, (session.id,), t,
                f"{ex.method} {ex.path} got {ex.status} 'session not found' for session "
                f"#{session.id}, which had {session.ok} successful answer"
                f"{'s' if session.ok != 1 else ''} (the last {secs(t - session.last_ok_at)} "
                "earlier). Usual cause: a load balancer without sticky sessions sending the "
                "request to another replica, a server restart, or the session expiring",
                session_id=session.id, exchange_id=ex.id, status=ex.status,
                earlier_successes=session.ok,
            )
            return
        if session.not_found >= 2:
            self._never_recovered(t, session, ex.client, ex.id)
        elif session.id not in self._recoveries:
            self._recoveries[session.id] = (t, ex.client, ex.id)

    def _never_recovered(self, t: float, session: SessionState, client: tuple[str, str],
                         exchange_id: int | None) -> None:
        self._recoveries.pop(session.id, None)
        first = session.not_found_at if session.not_found_at is not None else t
        self._flag(
            SESSION_NOT_FOUND, (session.id,), t,
            f"session #{session.id} was answered 'session not found' {session.not_found} "
            f"time{'s' if session.not_found != 1 else ''} over {secs(t - first)} and its client "
            f"({client[0] or '?'}) did not re-initialize; clients must start a new session "
            "with initialize after a 404. Usual cause: a client that ignores 404, or a server "
            "answering 400 instead of 404 so the client never knows to recover",
            session_id=session.id, exchange_id=exchange_id, count=session.not_found,
        )

    # Tenant isolation ---------------------------------------------------------------------------

    def _note_answer(self, t: float, session: SessionState, call_direction: str, rpc_id: str,
                     text: Any) -> None:
        """Remember who got which answer, to recognise the same answer in another session."""
        if isinstance(text, str | bytes):
            self._answer_prints.setdefault((call_direction, rpc_id, hash(text)), {})[
                session.id] = t

    def _foreign_answer(self, t: float, row: MessageSeen, session: SessionState,
                        direction: str, stream: StreamState | None) -> bool:
        """An answer this session never asked for that another session did: cross-delivery.

        The owner is a session with a pending request of that id, or one that was just given
        the very same answer (a broadcast reaches every stream, its owner's too).
        """
        rpc_id = str(row.rpc_id)
        call_direction = opposite(direction)
        owner: int | None = None
        why = ""
        waiting = self._open_ids.get((call_direction, rpc_id), {})
        for other in self._sessions:  # in the order sessions began, as the flag names them
            call = self._calls.get(waiting.get(other, -1)) if other != session.id else None
            if call is not None:
                owner, why = other, f"its {call.label} is waiting for it"
                break
        text = row.json
        if owner is None and isinstance(text, str | bytes):
            prints = self._answer_prints.get((call_direction, rpc_id, hash(text)), {})
            recent = [(at, sid) for sid, at in prints.items()
                      if sid != session.id and t - at <= CROSS_SESSION_WINDOW]
            if recent:
                at, owner = max(recent)
                why = f"the same answer reached it {secs(t - at)} earlier"
        if owner is None:
            return False
        self._cross_session(t, row, session, owner, stream,
                            f"an answer to request id {rpc_id} of session #{owner} ({why})")
        return True

    def _foreign_progress(self, t: float, row: MessageSeen, session: SessionState,
                          direction: str, stream: StreamState | None, token: str) -> None:
        """Progress with a token this session never issued but another session did."""
        for other, call_id in self._open_tokens.get((opposite(direction), token), {}).items():
            if other != session.id:
                call = self._calls.get(call_id)
                label = f" for its {call.label}" if call is not None else ""
                self._cross_session(t, row, session, other, stream,
                                    f"progress with token {token} of session #{other}{label}")
                return

    def _cross_session(self, t: float, row: MessageSeen, session: SessionState, owner: int,
                       stream: StreamState | None, what: str) -> None:
        where = f" on {stream.label()}" if stream is not None else ""
        pair = sorted((owner, session.id))
        self._flag(
            CROSS_SESSION_DELIVERY, tuple(pair), t,
            f"session #{session.id} received {what}{where}: a message delivered to a session it "
            f"does not belong to, so one tenant sees another's data. Usual cause: a server or "
            "gateway that sends every message to every open stream (supergateway's legacy SSE "
            "mode), or a session map keyed wrongly",
            session_id=session.id, message_id=row.id, stream_id=row.stream_id,
            exchange_id=row.exchange_id, sessions=pair, owner=owner,
        )
