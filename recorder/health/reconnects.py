"""Reconnect detectors: storms, resumption after a break, rate limits.

Design notes:
- Storms are counted per client (host and user agent) and endpoint, whatever the session:
  a legacy client that reconnects gets a new session each time, and a Streamable HTTP client
  that re-initializes in a loop a new session id. Only failed or short-lived attempts count.
- A reconnect after a stream that issued event ids must resume (`Last-Event-ID`) from an id
  the session issued. A retry must wait for the `retry:` or `Retry-After` it was given.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from itertools import pairwise
from urllib.parse import urlsplit

from recorder.events import ExchangeEnded, MessageSeen, RequestSeen, ResponseSeen
from recorder.health.context import Context, Detector
from recorder.health.registry import IDLE_TIMEOUT_CLOSE, RATE_LIMITED, RECONNECT_STORM, RESUME_GAP
from recorder.health.state import (
    Attempts,
    ExchangeState,
    InitLoop,
    RetryAfter,
    SessionState,
    secs,
    session_list,
)
from recorder.health.streams import IDLE_CAUSE
from recorder.model import C2S


class ReconnectChecks(Detector):
    """Reconnect detectors: storms, resumption after a break, rate limits."""

    HANDLES = {RequestSeen: "_on_request", ResponseSeen: "_on_response",
               ExchangeEnded: "_on_exchange_end", MessageSeen: "_on_message"}

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._attempts: dict[tuple[str, ...], Attempts] = {}  # GET streams per client and URL
        self._init_loops: dict[tuple[str, ...], InitLoop] = {}  # initializes per client
        self._retry_after: dict[tuple[str, ...], RetryAfter] = {}  # waits asked per client

    def _on_request(self, e: RequestSeen) -> None:
        ex = self.ctx.exchanges[e.id]
        self._check_retry_after(e.t, ex)
        if ex.method == "GET" and "text/event-stream" in ex.headers.get("accept", ""):
            self._stream_attempt(e.t, ex)

    def _on_response(self, e: ResponseSeen) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is not None and e.status in (429, 503):
            self._rate_limited(e.t, ex, ex.response_headers)

    def _on_exchange_end(self, e: ExchangeEnded) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is not None and ex.attempt_key is not None:
            self._attempt_ended(e.t, ex, e.error)

    def _on_message(self, e: MessageSeen) -> None:
        if e.kind != "request" or e.method != "initialize":
            return  # most messages are no initialize: spare them the lookup
        said = self.ctx.said_for(e.id)
        if e.direction == C2S and e.rpc_id is not None and said is not None \
                and said.exchange is not None:
            session = self.ctx.session(e.session_id)
            assert session is not None
            self._initialize_attempt(e.t, said.exchange, session)

    def _confirm_idle_suspect(self, t: float, ex: ExchangeState) -> None:
        suspect = self.ctx.idle_suspects.pop((*ex.client, ex.server, ex.path), None)
        if suspect is not None and t <= suspect.due:
            self.ctx.flag(IDLE_TIMEOUT_CLOSE, (suspect.stream_id,), suspect.closed_at,
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
                self.ctx.flag(
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
        sessions = list(dict.fromkeys(state.sessions))
        across = f", across sessions {session_list(sessions)}" if len(sessions) > 1 else ""
        if len(state.reconnects) >= cfg.storm_count:
            self.ctx.flag(
                RECONNECT_STORM, subject, t,
                f"{who} reopened {target} {len(state.reconnects)} times in "
                f"{secs(min(cfg.storm_window, t - state.reconnects[0]))} after failed or "
                f"short-lived attempts (last delay {secs(delay)}){across}. Usual cause: a "
                "client that reconnects on every end of stream or 404/405 without backoff",
                count=len(state.reconnects), window=cfg.storm_window, session_id=session_id,
                exchange_id=ex.id, sessions=sessions or None,
            )
        state.delays.append(delay)
        run = state.delays[-cfg.storm_no_backoff:]
        if len(run) >= cfg.storm_no_backoff and all(
                b <= a * 1.1 + 0.05 for a, b in pairwise(run)):
            shown = ", ".join(f"{d:.2f}" for d in run)
            self.ctx.flag(
                RECONNECT_STORM, subject, t,
                f"{who} reopened {target} {len(run)} times in a row with no backoff (delays "
                f"{shown} s, never growing){across}. Usual cause: a fixed-delay reconnect loop; "
                "use exponential backoff with a cap and respect retry",
                delays=[round(d, 3) for d in run], session_id=session_id, exchange_id=ex.id,
                sessions=sessions or None,
            )

    def _attempt_ended(self, t: float, ex: ExchangeState, error: str | None) -> None:
        assert ex.attempt_key is not None
        state = self._attempts.get(ex.attempt_key)
        if state is None:
            return
        state.open = max(state.open - 1, 0)
        ok = ex.status is not None and 200 <= ex.status < 300 and ex.sse
        reason = ex.stream_reason or ("error" if error else "end")
        session = self.ctx.sessions.get(ex.session_id or -1)
        lived = t - ex.started_at
        # A legacy client that drops its own GET while its session has done nothing (no
        # initialize) and opens another one is looping: each reconnect is a new session, so
        # the loop shows only across sessions. A session that did its work ended on purpose.
        idle_legacy = (session is not None and session.transport == "sse"
                       and not session.initialized and lived < self.config.storm_short_lived)
        if ok and (reason == "recorder-stop"
                   or (reason == "client-disconnect" and not idle_legacy)
                   or (session is not None and session.ending)):
            state.last_end = None  # the client or the recorder ended it: not a reconnect cause
            return
        if ex.session_id is not None:
            state.sessions.append(ex.session_id)
        state.last_end = t
        state.last_failed = not ok or reason == "client-disconnect"
        state.last_lived = lived
        state.last_reason = reason
        state.last_retry_ms = ex.stream_retry_ms
        if ex.session_id is not None:
            state.session_id = ex.session_id

    def _check_resume(self, t: float, ex: ExchangeState) -> None:
        session = self.ctx.session(ex.session_id)
        if session is None or session.pending_break is None:
            return
        brk = session.pending_break
        session.pending_break = None
        sent = ex.headers.get("last-event-id")
        if not sent:
            self.ctx.flag(
                RESUME_GAP, ("no-cursor", ex.id), t,
                f"GET {ex.path} reconnected {secs(t - brk.at)} after stream #{brk.stream_id} "
                f"ended, without Last-Event-ID, though that stream had issued event ids (last "
                f"{brk.last_id!r}); whatever was sent in between is lost. Usual cause: a client "
                "that does not keep the SSE cursor across reconnects",
                session_id=session.id, exchange_id=ex.id, stream_id=brk.stream_id,
                last_event_id=brk.last_id,
            )
        elif sent not in session.event_ids:
            self.ctx.flag(
                RESUME_GAP, ("unknown-cursor", ex.id), t,
                f"GET {ex.path} resumed with Last-Event-ID {sent!r}, an id this session never "
                f"issued (stream #{brk.stream_id} last sent {brk.last_id!r}). Usual cause: a "
                "client that kept a stale or foreign cursor",
                session_id=session.id, exchange_id=ex.id, stream_id=brk.stream_id,
            )

    # Re-initialize loops ----------------------------------------------------------------------

    def _initialize_attempt(self, t: float, ex: ExchangeState, session: SessionState) -> None:
        """An initialize: a storm when a client keeps abandoning fresh sessions for new ones.

        Per client (host and user agent) and server, whatever the session: a Streamable HTTP
        client that re-initializes in a loop gets a new session id each time. A step of the
        loop is an initialize that follows the client's previous one quickly (within
        `storm_short_lived`), when that session did no work (or was lost) and was not ended
        with DELETE: a test suite running many short sessions that each work is no storm.
        """
        cfg = self.config
        key = (ex.client[0], ex.client[1], ex.server)
        loop = self._init_loops.setdefault(key, InitLoop())
        previous = self.ctx.sessions.get(loop.last_session if loop.last_session is not None else -1)
        if previous is not None and previous.id != session.id and not previous.ending \
                and t - loop.last_at < cfg.storm_short_lived \
                and (previous.work == 0 or previous.not_found > 0):
            if not loop.loops:
                loop.loops.append((loop.last_at, previous.id))
            loop.loops.append((t, session.id))
            while loop.loops and loop.loops[0][0] < t - cfg.storm_window:
                loop.loops.popleft()
            if len(loop.loops) > cfg.storm_count:
                sessions = [sid for _, sid in loop.loops]
                who = f"client {ex.client[0] or '?'} ({ex.client[1] or 'no user agent'})"
                self.ctx.flag(
                    RECONNECT_STORM, (ex.client, ex.server, "initialize"), t,
                    f"{who} initialized {len(sessions)} new sessions on {ex.server} in "
                    f"{secs(t - loop.loops[0][0])}, each abandoned before doing any work "
                    f"(sessions {session_list(sessions)}). Usual cause: a client that "
                    "re-initializes on every error or lost stream without backoff",
                    session_id=session.id, exchange_id=ex.id, count=len(sessions),
                    sessions=sessions,
                )
        elif previous is not None and previous.id != session.id:
            loop.loops.clear()
        loop.last_session, loop.last_at = session.id, t

    # Rate limits ------------------------------------------------------------------------------

    def _rate_limited(self, t: float, ex: ExchangeState, headers: dict[str, str]) -> None:
        """A 429 or 503: note it, and when the client may come back (`Retry-After`)."""
        assert ex.status is not None
        seconds = retry_after_seconds(headers.get("retry-after"), headers.get("date"))
        path = urlsplit(ex.url).path or ex.path
        if seconds is not None:
            key = (*ex.client, ex.server, path)
            before = self._retry_after.get(key)  # still waiting: early retries add up
            self._retry_after[key] = RetryAfter(t + seconds, seconds, ex.status,
                                                before.early if before is not None else 0)
        wait = f" with Retry-After: {headers['retry-after']}" if seconds is not None else \
            " (no Retry-After)"
        self.ctx.flag(
            RATE_LIMITED, (ex.client, ex.server, path, ex.status), t,
            f"{ex.server} answered {ex.method} {path} with {ex.status}"
            f"{' Too Many Requests' if ex.status == 429 else ' Service Unavailable'}{wait}; the "
            "client must wait before it retries. Usual cause: a rate or connection limit in "
            "the server or a gateway in front of it",
            session_id=ex.session_id, exchange_id=ex.id, status=ex.status,
            retry_after=seconds,
        )

    def _check_retry_after(self, t: float, ex: ExchangeState) -> None:
        """A request that comes back before the `Retry-After` it was given."""
        path = urlsplit(ex.url).path or ex.path
        key = (*ex.client, ex.server, path)
        wait = self._retry_after.get(key)
        if wait is None:
            return
        if t >= wait.until - 0.05:
            del self._retry_after[key]  # it waited: a polite retry
            return
        wait.early += 1
        if wait.early >= 2:
            who = f"client {ex.client[0] or '?'} ({ex.client[1] or 'no user agent'})"
            self.ctx.flag(
                RECONNECT_STORM, (ex.client, ex.server, path, "retry-after"), t,
                f"{who} retried {ex.method} {path} on {ex.server} {wait.early} times before "
                f"the Retry-After of {secs(wait.seconds)} its {wait.status} answer asked for. "
                "Usual cause: a retry loop that ignores Retry-After",
                session_id=ex.session_id, exchange_id=ex.id, early=wait.early,
                retry_after=wait.seconds,
            )


def retry_after_seconds(value: str | None, date: str | None) -> float | None:
    """`Retry-After` as seconds: delay-seconds, or an HTTP-date relative to the answer's Date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        now = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
    if now is None:
        return None
    return max((when - now).total_seconds(), 0.0)
