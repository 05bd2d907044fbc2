"""Reconnect detectors: storms, resumption after a break, rate limits."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from recorder.health.registry import IDLE_TIMEOUT_CLOSE, RECONNECT_STORM, RESUME_GAP
from recorder.health.state import Attempts, DetectorState, ExchangeState, secs
from recorder.health.streams import IDLE_CAUSE


class ReconnectChecks(DetectorState):
    """Reconnect detectors: storms, resumption after a break, rate limits."""

    def _confirm_idle_suspect(self, t: float, ex: ExchangeState) -> None:
        suspect = self._idle_suspects.pop((*ex.client, ex.server, ex.path), None)
        if suspect is not None and t <= suspect.due:
            self._flag(IDLE_TIMEOUT_CLOSE, (suspect.stream_id,), suspect.closed_at,
                       f"{suspect.text}; the client reconnected {secs(t - suspect.closed_at)} "
                       f"later, so it had not meant to end the stream{IDLE_CAUSE}",
                       **suspect.links)

    def _stream_attempt(self, t: float, ex: ExchangeState) -> None:
        # Per client and URL, and per session when the GET names one: a new session's first
        # GET is not a reconnect. Legacy reconnect loops get a new session each time, hence
        # the client and URL alone when no session is named.
        self._confirm_idle_suspect(t, ex)
        key = (ex.client[0], ex.client[1], ex.server, ex.path,
               ex.headers.get("mcp-session-id", ""))
        ex.attempt_key = key
        state = self._attempts.setdefault(key, Attempts())
        if ex.session_id is not None:
            state.session_id = ex.session_id
        self._check_resume(t, ex)
        if state.open == 0 and state.last_end is not None:
            self._reconnect(t, ex, state, t - state.last_end)
        state.open += 1

    def _reconnect(self, t: float, ex: ExchangeState, state: Attempts, delay: float) -> None:
        cfg = self.config
        retry = (state.last_retry_ms or 0) / 1000.0
        failed = state.last_failed or (state.last_reason in ("end", "error")
                                       and state.last_lived < cfg.storm_short_lived)
        polite = (not state.last_failed and state.last_reason == "end" and retry > 0
                  and delay >= 0.9 * retry)
        if not failed or polite:
            state.delays.clear()
            return
        subject = (ex.client, ex.server, ex.path, ex.headers.get("mcp-session-id", ""))
        who = f"client {ex.client[0] or '?'} ({ex.client[1] or 'no user agent'})"
        target = f"GET {ex.path} on {ex.server}"
        session_id = ex.session_id or state.session_id
        if retry > 0 and delay < 0.9 * retry - 0.05:
            state.retry_violations += 1
            if state.retry_violations >= 2:
                self._flag(
                    RECONNECT_STORM, subject, t,
                    f"{who} reopened {target} {secs(delay)} after the last attempt ended, "
                    f"though the server asked for retry: {state.last_retry_ms} ms; clients "
                    "must respect retry. Usual cause: a reconnect loop that ignores the SSE "
                    "retry field",
                    delay=round(delay, 3), retry_ms=state.last_retry_ms, session_id=session_id,
                    exchange_id=ex.id,
                )
        state.reconnects.append(t)
        while state.reconnects and state.reconnects[0] < t - cfg.storm_window:
            state.reconnects.popleft()
        if len(state.reconnects) >= cfg.storm_count:
            self._flag(
                RECONNECT_STORM, subject, t,
                f"{who} reopened {target} {len(state.reconnects)} times in "
                f"{secs(min(cfg.storm_window, t - state.reconnects[0]))} after failed or "
                f"short-lived attempts (last delay {secs(delay)}). Usual cause: a client that "
                "reconnects on every end of stream or 404/405 without backoff",
                count=len(state.reconnects), window=cfg.storm_window, session_id=session_id,
                exchange_id=ex.id,
            )
        state.delays.append(delay)
        run = state.delays[-cfg.storm_no_backoff:]
        if len(run) >= cfg.storm_no_backoff and all(
                b <= a * 1.1 + 0.05 for a, b in pairwise(run)):
            shown = ", ".join(f"{d:.2f}" for d in run)
            self._flag(
                RECONNECT_STORM, subject, t,
                f"{who} reopened {target} {len(run)} times in a row with no backoff (delays "
                f"{shown} s, never growing). Usual cause: a fixed-delay reconnect loop; use "
                "exponential backoff with a cap and respect retry",
                delays=[round(d, 3) for d in run], session_id=session_id, exchange_id=ex.id,
            )

    def _attempt_ended(self, t: float, ex: ExchangeState, error: Any) -> None:
        assert ex.attempt_key is not None
        state = self._attempts.get(ex.attempt_key)
        if state is None:
            return
        state.open = max(state.open - 1, 0)
        ok = ex.status is not None and 200 <= ex.status < 300 and ex.sse
        reason = ex.stream_reason or ("error" if error else "end")
        session = self._sessions.get(ex.session_id or -1)
        if ok and (reason in ("recorder-stop", "client-disconnect")
                   or (session is not None and session.ending)):
            state.last_end = None  # the client or the recorder ended it: not a reconnect cause
            return
        state.last_end = t
        state.last_failed = not ok
        state.last_lived = t - ex.started_at
        state.last_reason = reason
        state.last_retry_ms = ex.stream_retry_ms
        if ex.session_id is not None:
            state.session_id = ex.session_id

    def _check_resume(self, t: float, ex: ExchangeState) -> None:
        session = self._session(ex.session_id)
        if session is None or session.pending_break is None:
            return
        brk = session.pending_break
        session.pending_break = None
        sent = ex.headers.get("last-event-id")
        if not sent:
            self._flag(
                RESUME_GAP, ("no-cursor", ex.id), t,
                f"GET {ex.path} reconnected {secs(t - brk.at)} after stream #{brk.stream_id} "
                f"ended, without Last-Event-ID, though that stream had issued event ids (last "
                f"{brk.last_id!r}); whatever was sent in between is lost. Usual cause: a client "
                "that does not keep the SSE cursor across reconnects",
                session_id=session.id, exchange_id=ex.id, stream_id=brk.stream_id,
                last_event_id=brk.last_id,
            )
        elif sent not in session.event_ids:
            self._flag(
                RESUME_GAP, ("unknown-cursor", ex.id), t,
                f"GET {ex.path} resumed with Last-Event-ID {sent!r}, an id this session never "
                f"issued (stream #{brk.stream_id} last sent {brk.last_id!r}). Usual cause: a "
                "client that kept a stale or foreign cursor",
                session_id=session.id, exchange_id=ex.id, stream_id=brk.stream_id,
            )
