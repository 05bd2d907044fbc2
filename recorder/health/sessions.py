"""Session detectors: lost sessions, missing re-initialize, cross-session delivery.

Design notes:
- "Session not found" is a finding when the session had worked (a load balancer or restart
  lost it) or when its client never recovers by re-initializing within a grace period.
- Tenant isolation: the correlator pairs answers within their session, so an answer (or a
  progress token) that is another session's shows up as an orphan of its own. The call
  detectors ask `foreign_answer` before calling an answer an orphan; the owner is a session
  with a pending call of that id, or one that just got the very same answer (a broadcast).
"""

from __future__ import annotations

from typing import Any

from recorder.correlate import opposite
from recorder.events import CallOrphan, ExchangeEnded, MessageSeen
from recorder.health.context import Context, Detector
from recorder.health.registry import CROSS_SESSION_DELIVERY, REINIT_MISSING, SESSION_NOT_FOUND
from recorder.health.state import (
    ExchangeState,
    SessionState,
    StreamState,
    payload_of,
    secs,
)
from recorder.jsonrpc import id_key
from recorder.model import C2S

# How far apart two deliveries of one answer may be to count as one broadcast.
CROSS_SESSION_WINDOW = 10.0


class SessionChecks(Detector):
    """Session detectors: lost sessions, missing re-initialize, cross-session delivery."""

    HANDLES = {MessageSeen: "_on_message", ExchangeEnded: "_on_exchange_end",
               CallOrphan: "_on_orphan"}

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # Sessions answered "not found" that may still recover: id -> (when, client, exchange).
        self._recoveries: dict[int, tuple[float, tuple[str, str], int | None]] = {}
        # (call direction, id, hash of the answer's text) -> session -> when it was delivered.
        self._answer_prints: dict[tuple[str, str, int], dict[int, float]] = {}

    def tick(self, t: float) -> None:
        for session_id, (at, client, exchange_id) in list(self._recoveries.items()):
            if t - at < self.config.session_recover_grace:
                continue
            del self._recoveries[session_id]
            if self.ctx.reinitialized.get(client, -1.0) >= at:
                continue
            session = self.ctx.sessions.get(session_id)
            if session is not None:
                self._never_recovered(t, session, client, exchange_id)

    def _on_message(self, e: MessageSeen) -> None:
        method = e.method or ""
        if e.kind != "request" or e.direction != C2S or e.rpc_id is None \
                or method in ("initialize", "server/discover", "ping"):
            return
        session = self.ctx.session(e.session_id)
        if session is not None and session.fresh_legacy and not session.initialized:
            self._reinit_missing(e.t, e, session, method)

    def _on_exchange_end(self, e: ExchangeEnded) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is not None:
            self._check_session_not_found(e.t, ex, e.response_body)

    def _on_orphan(self, e: CallOrphan) -> None:
        """Progress for no open call of its session: perhaps another session's token."""
        said = self.ctx.said_for(e.message_id)
        if e.what != "progress-unknown" or said is None:
            return
        payload = payload_of(said.message)
        params = payload.get("params") if isinstance(payload, dict) else None
        session = self.ctx.session(e.session_id)
        if isinstance(params, dict) and "progressToken" in params and session is not None:
            self._foreign_progress(e.t, said.message, session, said.message.direction,
                                   said.stream, id_key(params["progressToken"]))

    def _reinit_missing(self, t: float, row: MessageSeen, session: SessionState,
                        method: str) -> None:
        earlier = [s for s in self.ctx.sessions.values()
                   if s.id < session.id and s.transport == "sse" and s.client == session.client]
        before = f" after this client's session #{earlier[-1].id}" if earlier else ""
        self.ctx.flag(
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
        session = self.ctx.session(ex.session_id)
        if session is None:
            return
        session.not_found += 1
        if session.not_found_at is None:
            session.not_found_at = t
        if session.deleted:
            return
        if session.ok > 0 and session.last_ok_at is not None:
            self.ctx.flag(
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
        self.ctx.flag(
            SESSION_NOT_FOUND, (session.id,), t,
            f"session #{session.id} was answered 'session not found' {session.not_found} "
            f"time{'s' if session.not_found != 1 else ''} over {secs(t - first)} and its client "
            f"({client[0] or '?'}) did not re-initialize; clients must start a new session "
            "with initialize after a 404. Usual cause: a client that ignores 404, or a server "
            "answering 400 instead of 404 so the client never knows to recover",
            session_id=session.id, exchange_id=exchange_id, count=session.not_found,
        )

    # Tenant isolation ---------------------------------------------------------------------------

    def note_answer(self, t: float, session: SessionState, call_direction: str, rpc_id: str,
                     text: Any) -> None:
        """Remember who got which answer, to recognise the same answer in another session."""
        if isinstance(text, str | bytes):
            self._answer_prints.setdefault((call_direction, rpc_id, hash(text)), {})[
                session.id] = t

    def foreign_answer(self, t: float, row: MessageSeen, session: SessionState,
                        direction: str, stream: StreamState | None) -> bool:
        """An answer this session never asked for that another session did: cross-delivery.

        The owner is a session with a pending request of that id, or one that was just given
        the very same answer (a broadcast reaches every stream, its owner's too).
        """
        rpc_id = str(row.rpc_id)
        call_direction = opposite(direction)
        owner: int | None = None
        why = ""
        waiting = self.ctx.open_ids.get((call_direction, rpc_id), {})
        for other in self.ctx.sessions:  # in the order sessions began, as the flag names them
            call = self.ctx.calls.get(waiting.get(other, -1)) if other != session.id else None
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
        for other, call_id in self.ctx.open_tokens.get((opposite(direction), token), {}).items():
            if other != session.id:
                call = self.ctx.calls.get(call_id)
                label = f" for its {call.label}" if call is not None else ""
                self._cross_session(t, row, session, other, stream,
                                    f"progress with token {token} of session #{other}{label}")
                return

    def _cross_session(self, t: float, row: MessageSeen, session: SessionState, owner: int,
                       stream: StreamState | None, what: str) -> None:
        where = f" on {stream.label()}" if stream is not None else ""
        pair = sorted((owner, session.id))
        self.ctx.flag(
            CROSS_SESSION_DELIVERY, tuple(pair), t,
            f"session #{session.id} received {what}{where}: a message delivered to a session it "
            f"does not belong to, so one tenant sees another's data. Usual cause: a server or "
            "gateway that sends every message to every open stream (supergateway's legacy SSE "
            "mode), or a session map keyed wrongly",
            session_id=session.id, message_id=row.id, stream_id=row.stream_id,
            exchange_id=row.exchange_id, sessions=pair, owner=owner,
        )
