"""Stream detectors: heartbeats, bursts, truncation, idle-timeout closes, event ids.

Design notes:
- Silence is measured on `ChunkSeen` (bytes arrived) and on ticks, so a stream that goes
  quiet is flagged while it is quiet. A heartbeat is a comment, an id or retry line, an empty
  event or a server ping: its cadence, learned per stream, is the evidence a silence needs.
- A burst is chunks closer together than `burst_window`; after a long silence it means held
  back events, unless an answer to a request sent during the silence explains the wait.
- Streams are lanes of event ids: a resume continues its stream's lane (context.py), and ids
  must go on where the cursor was, never repeat, never come from another lane.
"""

from __future__ import annotations

import statistics
from collections import deque
from itertools import pairwise
from typing import Any

from recorder.events import (
    CallAnswered,
    ChunkSeen,
    MessageSeen,
    ResponseSeen,
    SseSeen,
    StreamClosed,
)
from recorder.gaps import CaptureGap
from recorder.health.context import Context, Detector
from recorder.health.registry import (
    BUFFERED_STREAM,
    HEARTBEAT_MISSING,
    IDLE_TIMEOUT_CLOSE,
    RESUME_GAP,
    STREAM_TRUNCATED,
)
from recorder.health.state import (
    Break,
    Close,
    ExchangeState,
    SessionState,
    StreamState,
    Suspect,
    Truncation,
    numeric_suffix,
    payload_of,
    secs,
    timeout_cause,
)
from recorder.model import C2S

IDLE_CAUSE = (". Usual cause: an idle or read timeout in a proxy, load balancer or client; "
               "send heartbeats more often, or raise the timeout")
_BUFFERING_PROXIES = ("nginx", "openresty")


class StreamChecks(Detector):
    """Stream detectors: heartbeats, bursts, truncation, idle-timeout closes, event ids."""

    HANDLES = {ResponseSeen: "_on_response", ChunkSeen: "_on_chunk", SseSeen: "_on_sse",
               StreamClosed: "_on_stream_close", MessageSeen: "_on_message",
               CallAnswered: "_on_call_answered", CaptureGap: "_on_gap"}

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._closes: deque[Close] = deque(maxlen=500)  # unexplained closes, to spot recurrence
        self._truncations: list[Truncation] = []  # resumable streams cut with calls pending
        # The silence allowed a stream with no heartbeat yet: the config alone decides it, and
        # it is asked on every chunk.
        cfg = self.config
        self._fallback_limit = max(cfg.heartbeat_factor * cfg.heartbeat_interval,
                                   cfg.heartbeat_interval + cfg.heartbeat_slack)

    def tick(self, t: float) -> None:
        cfg = self.config
        for stream in list(self.ctx.streams.values()):
            if stream.burst_started is not None and t - stream.burst_last > cfg.burst_window:
                self._end_burst(stream)
            last = stream.last_byte if stream.last_byte is not None else stream.opened_at
            self._check_heartbeat(stream, t, t - last)
        if self._truncations:
            due = [tr for tr in self._truncations if tr.due <= t]
            self._truncations = [tr for tr in self._truncations if tr.due > t]
            for tr in due:
                call_ids = [c for c in tr.calls if c in self.ctx.calls]
                session = self.ctx.sessions.get(tr.stream.session_id or -1)
                resumed_at = session.resumed.get(tr.stream.lane) if session is not None else None
                if resumed_at is not None and resumed_at >= tr.closed_at:
                    continue  # the client resumed that stream: its answer may still come there
                if call_ids:
                    self._truncated_early(tr.stream, call_ids, tr.closed_at, tr.reason)

    def _on_response(self, e: ResponseSeen) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is not None and ex.mcp and ex.sse and 200 <= e.status < 300:
            self._check_stream_headers(e.t, ex, ex.response_headers)

    def _on_message(self, e: MessageSeen) -> None:
        stream = self.ctx.streams.get(e.stream_id) if e.stream_id else None
        if stream is None:
            return
        if e.kind == "request" and e.method == "ping" and e.rpc_id is not None:
            self._heartbeat(stream, e.t)  # a server's ping keeps the stream alive too
        elif e.kind == "notification" and e.method == "notifications/progress" \
                and self._in_burst(stream, e.t):
            payload = payload_of(e)
            params = payload.get("params") if isinstance(payload, dict) else None
            if isinstance(params, dict) and "progressToken" in params:
                stream.burst_progress += 1

    def _on_call_answered(self, e: CallAnswered) -> None:
        said = self.ctx.said_for(e.response_message_id)
        stream = said.stream if said is not None else None
        call = self.ctx.calls.get(e.call_id)
        if stream is not None and call is not None and stream.burst_started is not None \
                and self._in_burst(stream, e.t) \
                and call.sent_at >= stream.burst_started - stream.burst_silence:
            stream.burst_explained = True  # the tool was working: the silence is explained

    def _check_stream_headers(self, t: float, ex: ExchangeState, headers: dict[str, str]) -> None:
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding and encoding != "identity":
            self.ctx.flag(
                BUFFERED_STREAM, ("encoding", ex.server, ex.path), t,
                f"{ex.method} {ex.path} answers text/event-stream with Content-Encoding: "
                f"{encoding}; compressors hold events back until their buffer fills. Usual "
                "cause: a gzip middleware or proxy compressing event streams",
                session_id=ex.session_id, exchange_id=ex.id, stream_id=ex.stream_id,
                content_encoding=encoding,
            )
        via = f"{headers.get('server', '')} {headers.get('via', '')}".lower()
        accel = headers.get("x-accel-buffering", "").strip().lower()
        if any(p in via for p in _BUFFERING_PROXIES) and accel != "no":
            self.ctx.flag(
                BUFFERED_STREAM, ("proxy", ex.server, ex.path), t,
                f"{ex.method} {ex.path} streams through nginx (Server/Via) without "
                "X-Accel-Buffering: no; nginx buffers proxied responses by default, so events "
                "and heartbeats can arrive in bursts. Fix: proxy_buffering off or the header",
                session_id=ex.session_id, exchange_id=ex.id, stream_id=ex.stream_id,
            )

    def _on_chunk(self, e: ChunkSeen) -> None:
        stream = self.ctx.streams.get(e.stream_id)
        if stream is None:
            return
        t = e.t
        previous = stream.last_byte if stream.last_byte is not None else stream.opened_at
        silence = t - previous
        if stream.last_byte is not None:
            stream.gaps.append(silence)
        # A silence that ended before any tick saw it (sparse ticks) is still a silence.
        self._check_heartbeat(stream, t, silence)
        if stream.burst_started is not None and t - stream.burst_last <= self.config.burst_window:
            stream.burst_last = t
        else:
            self._end_burst(stream)
            stream.burst_started = stream.burst_last = t
            stream.burst_silence = silence
            stream.burst_items = stream.burst_heartbeats = stream.burst_progress = 0
            stream.burst_explained = False
        stream.last_byte = t

    def _on_gap(self, e: CaptureGap) -> None:
        """Bytes of the stream passed the proxy but were not recorded (shed under overload,
        a dead worker): the stream was not silent then, and what follows is no burst after
        a silence. Whatever burst was under way ends where the record does."""
        stream = self.ctx.streams.get(e.stream_id) if e.stream_id is not None else None
        if stream is None:
            return
        self._end_burst(stream)
        stream.last_byte = max(stream.last_byte or stream.opened_at, e.ended_at)

    def _heartbeat(self, stream: StreamState, t: float) -> None:
        since = stream.last_heartbeat if stream.last_heartbeat is not None else stream.opened_at
        if t - since >= 0.05:  # bunched heartbeats say nothing about the cadence
            stream.note_heartbeat(t - since)
        stream.last_heartbeat = t
        if self._in_burst(stream, t):
            stream.burst_heartbeats += 1

    def _on_sse(self, e: SseSeen) -> None:
        stream = self.ctx.streams.get(e.stream_id)
        if stream is None:
            return
        t = e.t
        session = self.ctx.session(stream.session_id)
        kind = e.kind
        if kind in ("event", "comment") and self._in_burst(stream, t):
            stream.burst_items += 1
        if e.retry is not None:
            stream.retry_ms = e.retry
        if kind == "comment" or kind == "control" or (kind == "event" and e.data == ""):
            self._heartbeat(stream, t)
        elif kind == "incomplete":
            stream.incomplete = True
        event_id = e.event_id
        if kind in ("event", "control") and event_id is not None:
            if event_id:
                stream.last_id = event_id
                if session is not None:
                    self._event_id(t, stream, session, event_id)
            else:
                stream.last_id = None

    def _event_id(self, t: float, stream: StreamState, session: SessionState,
                  event_id: str) -> None:
        """Event ids are cursors per stream, unique in the session (mcp-wire.md 2.6)."""
        seen = session.event_ids.get(event_id)
        lane_ids = session.lane_ids.setdefault(stream.lane, [])
        if seen is None:
            if stream.role == "resume" and stream.last_event_id_sent:
                self._check_gap(t, stream, session, lane_ids, event_id)
            session.event_ids[event_id] = (stream.lane, len(lane_ids))
            lane_ids.append(event_id)
            return
        lane, position = seen
        if lane != stream.lane:
            self.ctx.flag(
                RESUME_GAP, ("foreign", stream.id), t,
                f"{stream.label()} delivered event id {event_id!r}, which had already gone out "
                f"on another stream of the session; a server must replay only the resumed "
                "stream's own events. Usual cause: an event store keyed by session, not stream",
                session_id=session.id, stream_id=stream.id, event_id=event_id,
            )
        elif stream.role == "resume":
            cursor = session.event_ids.get(stream.last_event_id_sent or "")
            if cursor is not None and position <= cursor[1]:
                self.ctx.flag(
                    RESUME_GAP, ("replayed", stream.id), t,
                    f"{stream.label()} resumed after {stream.last_event_id_sent!r} but replayed "
                    f"{event_id!r}, delivered before that cursor; the client sees it twice. "
                    "Usual cause: an event store that replays from the wrong position",
                    session_id=session.id, stream_id=stream.id, event_id=event_id,
                )

    def _check_gap(self, t: float, stream: StreamState, session: SessionState, lane_ids: list[str],
                   event_id: str) -> None:
        """After a resume, ids with a numeric suffix that counted by one must go on doing so."""
        if not lane_ids or lane_ids[-1] != stream.last_event_id_sent:
            return
        numbers = [numeric_suffix(i) for i in lane_ids[-4:]]
        current = numeric_suffix(event_id)
        if current is None or any(n is None for n in numbers) or len(numbers) < 2:
            return
        steps = [b - a for a, b in pairwise(numbers)]  # type: ignore[operator]
        last = numbers[-1]
        assert last is not None
        if all(s == 1 for s in steps) and current > last + 1:
            missing = current - last - 1
            self.ctx.flag(
                RESUME_GAP, ("gap", stream.id), t,
                f"{stream.label()} resumed after {stream.last_event_id_sent!r} with "
                f"{event_id!r}: a gap of {missing} event{'s' if missing != 1 else ''} that were "
                "never replayed. Usual cause: an event store that dropped or expired them",
                session_id=session.id, stream_id=stream.id, missing=missing,
            )

    def _check_heartbeat(self, stream: StreamState, t: float, silence: float) -> None:
        cfg = self.config
        cadence = stream.cadence()
        if cadence is not None:
            median, mad, count = cadence
            limit = max(cfg.heartbeat_factor * median, median + 4 * mad,
                        median + cfg.heartbeat_slack)
        else:
            median, count = cfg.heartbeat_interval, 0
            if median <= 0:
                return
            limit = self._fallback_limit
        if silence <= limit:
            return
        lived = t - stream.opened_at
        if count:
            text = (f"no bytes for {secs(silence)} on {stream.label()}; this stream's heartbeat "
                    f"cadence is {secs(median)} (from {count} interval"
                    f"{'s' if count != 1 else ''}), so more than {secs(limit)} of silence is "
                    "not expected. Usual cause: the server's keep-alive stopped (stalled "
                    "event loop, dead worker) or a proxy is holding the stream")
        else:
            nearest = [c for c in cfg.idle_timeouts if c > silence]
            risk = f"; the next common idle timeout is {secs(nearest[0])}" if nearest else ""
            text = (f"no bytes for {secs(silence)} on {stream.label()} and no heartbeat in its "
                    f"{secs(lived)} so far (expected one every {secs(median)}): no heartbeat, "
                    f"at risk of idle timeouts{risk}. Usual cause: the server sends no "
                    "keep-alive comments (TypeScript SDK before 1.30, custom servers)")
        self.ctx.flag(HEARTBEAT_MISSING, (stream.id,), t, text, session_id=stream.session_id,
                   stream_id=stream.id, exchange_id=stream.exchange_id,
                   silence=round(silence, 3), cadence=round(median, 3) if count else None,
                   limit=round(limit, 3))

    def _in_burst(self, stream: StreamState, t: float) -> bool:
        started = stream.burst_started
        return started is not None and t - stream.burst_last <= self.config.burst_window

    def _end_burst(self, stream: StreamState) -> None:
        if stream.burst_started is None:
            return
        cfg = self.config
        started, silence = stream.burst_started, stream.burst_silence
        stream.burst_started = None
        if stream.burst_items < cfg.burst_events:
            return
        threshold = cfg.burst_gap
        if len(stream.gaps) >= 3:
            threshold = max(threshold, cfg.burst_gap_factor * statistics.median(stream.gaps))
        if silence < threshold:
            return
        # A response to a request sent during the silence explains it (the tool was working),
        # unless held-back heartbeats or progress steps arrived together with it.
        if stream.burst_explained and stream.burst_heartbeats < 2 and stream.burst_progress < 2:
            return
        extra = []
        if stream.burst_heartbeats >= 2:
            extra.append(f"{stream.burst_heartbeats} heartbeats among them")
        if stream.burst_progress >= 2:
            extra.append(f"{stream.burst_progress} progress steps among them")
        self.ctx.flag(
            BUFFERED_STREAM, ("burst", stream.id), started,
            f"{stream.burst_items} SSE events arrived together on {stream.label()} after "
            f"{secs(silence)} of silence{' (' + ', '.join(extra) + ')' if extra else ''}; "
            "events were held back and released in a burst. Usual cause: a buffering proxy "
            "(nginx proxy_buffering, X-Accel-Buffering missing) or compression middleware",
            session_id=stream.session_id, stream_id=stream.id, exchange_id=stream.exchange_id,
            events=stream.burst_items, silence=round(silence, 3),
        )

    def _on_stream_close(self, e: StreamClosed) -> None:
        stream = self.ctx.streams.get(e.stream_id)
        if stream is None:
            return
        t = e.t
        session = self.ctx.session(stream.session_id)
        self._end_burst(stream)
        reason = e.close_reason or "end"
        if reason == "recorder-stop" or (session is not None and session.ending):
            return  # the recorder or the client ended it: nothing the network did
        how = {"client-disconnect": "by the client", "end": "normally by the server",
               "error": "with an error"}.get(reason, f"with an error ({reason})")
        if stream.incomplete and reason != "client-disconnect":
            self.ctx.flag(
                STREAM_TRUNCATED, (stream.id,), t,
                f"{stream.label()} ended mid-event (closed {how}): the bytes of an unfinished "
                "event were cut off and lost. Usual cause: the server or a proxy dropped the "
                "connection while writing",
                session_id=stream.session_id, stream_id=stream.id, exchange_id=stream.exchange_id,
            )
        unanswered = self._carried(stream, session, t, how)
        if unanswered and reason != "client-disconnect":
            if stream.last_id and stream.role in ("post", "resume", "get"):
                retry = (stream.retry_ms or 0) / 1000.0
                self._truncations.append(Truncation(stream, unanswered, t, how,
                                                     t + retry + self.config.resume_grace))
            else:
                self._truncated_early(stream, unanswered, t, how)
        if stream.last_id and session is not None and reason in ("end", "error") \
                and (stream.role != "post" or unanswered):
            session.pending_break = Break(stream.id, stream.last_id, t)
        self._check_idle_close(stream, t, reason, how, unanswered)

    def _carried(self, stream: StreamState, session: SessionState | None, t: float,
                 how: str) -> list[int]:
        """Requests whose answers this stream was to carry and never did."""
        if stream.role == "post":
            ex = self.ctx.exchanges.get(stream.exchange_id or -1)
            keys = list(ex.calls) if ex is not None else [
                k for k, c in self.ctx.calls.items() if c.stream_id == stream.id]
        elif stream.role == "legacy" and session is not None and session.transport == "sse":
            keys = [k for k, c in self.ctx.calls.items()
                    if c.session == session.id and c.direction == C2S]
        else:
            keys = []
        open_keys = []
        for key in keys:
            call = self.ctx.calls.get(key)
            if call is None or call.cancelled_at is not None:
                continue
            open_keys.append(key)
            if call.carrier_closed_at is None:
                call.carrier_closed_at = t
                call.carrier_close = f"{stream.label()} closed {how}"
        return open_keys

    def _truncated_early(self, stream: StreamState, keys: list[int], t: float,
                         how: str) -> None:
        calls = [self.ctx.calls[k] for k in keys if k in self.ctx.calls]
        if not calls:
            return
        first = calls[0]
        more = f" and {len(calls) - 1} more" if len(calls) > 1 else ""
        resumable = " and no resumption delivered it" if stream.last_id else \
            " and it issued no event ids, so it cannot be resumed"
        self.ctx.flag(
            STREAM_TRUNCATED, (stream.id,), t,
            f"{stream.label()} closed {how} {secs(t - stream.opened_at)} after it opened, "
            f"before the response to {first.label}{more}{resumable}. Usual cause: a proxy or "
            "server timeout, a crash, or a deploy cutting the connection",
            session_id=stream.session_id, stream_id=stream.id, exchange_id=stream.exchange_id,
            call_id=first.call_id, pending=len(calls),
        )

    def _check_idle_close(self, stream: StreamState, t: float, reason: str, how: str,
                          unanswered: list[int]) -> None:
        cfg = self.config
        if stream.role == "post" and not unanswered:
            return  # a POST stream ends once its response is out: that is the protocol
        if reason == "end" and stream.retry_ms is not None:
            return  # the server asked for a reconnect delay first: a deliberate close (polling)
        idle = t - (stream.last_byte if stream.last_byte is not None else stream.opened_at)
        age = t - stream.opened_at
        cadence = stream.cadence()
        idle_counts = cadence is None or idle >= 1.5 * cadence[0]
        # A stream whose content ended cleanly (no partial event, nothing it carried left
        # unanswered) and that the server ended is explained: it had said what it had to say.
        # Its duration is then no evidence of a deadline, however round; its idle time still is.
        clean_end = reason == "end" and not stream.incomplete and not unanswered
        age_counts = reason != "client-disconnect" and not clean_end
        found: tuple[str, float, float, str] | None = None
        for constant in cfg.idle_timeouts:
            tolerance = min(cfg.idle_tolerance * constant, cfg.idle_tolerance_max)
            who = timeout_cause(constant) or f"a configured {secs(constant)} timeout"
            if idle_counts and abs(idle - constant) <= tolerance:
                found = ("after {} of silence", idle, constant, who)
                break
            if age_counts and abs(age - constant) <= tolerance:
                found = ("{} after it opened", age, constant, who)
                break
        if found is not None:
            measure, value, constant, who = found
            text = (f"{stream.label()} was closed {how} {measure.format(secs(value))} "
                    f"(lived {secs(age)}, idle {secs(idle)}); {secs(constant)} is a common "
                    f"deadline: {who}")
            links: dict[str, Any] = {
                "session_id": stream.session_id, "stream_id": stream.id,
                "exchange_id": stream.exchange_id, "idle": round(idle, 3),
                "age": round(age, 3), "constant": constant}
            ex = self.ctx.exchanges.get(stream.exchange_id or -1)
            if reason == "client-disconnect" and stream.role != "post" and ex is not None:
                # A client closing its own stream is usually ending its session; it was a
                # timeout only if the client then reconnects.
                self.ctx.idle_suspects[(*ex.client, ex.server, ex.path)] = Suspect(
                    stream.id, t, text, links, t + cfg.storm_short_lived)
                return
            self.ctx.flag(IDLE_TIMEOUT_CLOSE, (stream.id,), t, text + IDLE_CAUSE, **links)
            return
        # A value that recurs in the capture: network faults scatter, deadlines do not.
        self._recurring_close(stream, t, idle if idle_counts else None,
                              age if age_counts else None, how)

    def _recurring_close(self, stream: StreamState, t: float, idle: float | None,
                         age: float | None, how: str) -> None:
        cfg = self.config
        for value, is_idle in ((idle, True), (age, False)):
            if value is None or value < cfg.idle_recur_min:
                continue
            tolerance = min(max(cfg.idle_tolerance * value, 0.1), cfg.idle_tolerance_max)
            close = Close(value, is_idle, stream.id, stream.label(), how, stream.session_id,
                           stream.exchange_id)
            matches = [c for c in self._closes
                       if c.is_idle == is_idle and abs(c.value - value) <= tolerance]
            self._closes.append(close)
            if len(matches) + 1 < cfg.idle_recur_count:
                continue
            measure = "after {} of silence" if is_idle else "{} after it opened"
            for other in [*matches, close]:
                self.ctx.flag(
                    IDLE_TIMEOUT_CLOSE, (other.stream_id,), t,
                    f"{other.label} was closed {other.how} {measure.format(secs(other.value))}"
                    f"; {len(matches) + 1} streams in this capture closed at "
                    f"{secs(value)} ± {secs(tolerance)}: a value that recurs is a deadline, "
                    "not a network fault. Usual cause: an idle or absolute timeout in a proxy, "
                    "load balancer or client",
                    session_id=other.session_id, stream_id=other.stream_id,
                    exchange_id=other.exchange_id, value=round(other.value, 3),
                    recurring=len(matches) + 1,
                )
            return
