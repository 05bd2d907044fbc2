"""Ingest's handling of what the proxy could not ship: capture gaps and resumed flows.

A gap fact says the proxy shed bytes of a flow instead of queueing them (overload, a stop),
or that a worker died with the flow open; a resume fact re-introduces a flow a dead worker
left open, so the restarted worker records the rest of it into the same capture. Either way
the stream's offsets and SSE parser go on as if the missing bytes had passed, and the gap is
recorded exactly (`capture_gaps`, and a `capture-gap` flag): recorded + shed = sent.

A mixin of recorder.ingest.Ingest (kept apart so each module holds one concern); it uses the
ingest's flows, sink and request/response transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from recorder.gaps import WORKER_DIED, CaptureGap
from recorder.ingest_state import FlowState, Observer, Sink, StreamState
from recorder.sse import SseParser

if TYPE_CHECKING:
    from recorder.wire import Fact


class GapIngest:
    """Gap and resume facts (see the module notes)."""

    flows: dict[str, FlowState]
    sink: Sink
    observers: list[Observer]
    now: float
    recovered: dict[str, int]

    # Ingest's transitions, which a resumed flow goes through again.
    _request: Callable[..., None]
    _response_headers: Callable[..., None]

    def _gap(self, flow_id: str | None, t_start: float, t_end: float, size: int, chunks: int,
             events: int | None, reason: str, offset: int | None = None,
             tail: bytes = b"") -> None:
        """The proxy shed `size` bytes of a flow (or its worker died): record the gap and let
        the stream's offsets and parser go on as if the bytes had passed."""
        flow = self.flows.get(flow_id) if flow_id is not None else None
        if flow is None:
            self._gap_recorded(CaptureGap(reason, t_start, t_end, bytes=size, chunks=chunks,
                                          events=events))
            return
        self.now = max(self.now, t_end)
        session_id = flow.session.id if flow.session else None
        stream = flow.stream
        if stream is None:
            # Part of a plain body is gone: the body is not stored, its size still counts.
            flow.response_gap = True
            flow.response_size += size
            flow.response_parts.clear()
            self._gap_recorded(CaptureGap(reason, t_start, t_end, bytes=size, chunks=chunks,
                                          events=events, session_id=session_id,
                                          exchange_id=flow.exchange_id))
            return
        # What the redaction stage holds back goes out now: the next bytes are not its
        # neighbours on the wire.
        self.sink.flush_stream(stream.id)
        self._record_pending_gap(stream)
        start = stream.stored_offset
        stream.stored_offset += size
        stream.byte_count += size
        stream.chunks += chunks
        stream.dirty = True
        # The event the gap cut into is lost whole: a fresh parser skips to its end, unless the
        # gap ended exactly at an event's blank line (then the next byte starts an event).
        stream.parser = SseParser.continued(stream.byte_count)
        stream.resync = not tail.endswith((b"\n\n", b"\n\r\n"))
        stream.resync_tail = tail[-2:]
        stream.pending_gap = CaptureGap(reason, t_start, t_end, bytes=size, chunks=chunks,
                                        events=events, session_id=session_id,
                                        exchange_id=flow.exchange_id, stream_id=stream.id,
                                        start_offset=start)
        # The checks learn of it now (bytes passed: no silence, no burst after one), the
        # capture once the event it cut is skipped and counted.
        self._show(stream.pending_gap)
        if not stream.resync:
            self._record_pending_gap(stream)

    def _gap_recorded(self, gap: CaptureGap) -> None:
        self.sink.record_gap(gap)
        self._show(gap)

    def _show(self, event: Any) -> None:
        """Hand an event, as stored, to every observer (the live checks, live spans)."""
        for observer in self.observers:
            observer(event)

    def _record_pending_gap(self, stream: StreamState, *, resynced: bool = False) -> None:
        gap = stream.pending_gap
        if gap is None:
            return
        stream.pending_gap = None
        if resynced and gap.events is not None:
            # The event cut by the gap ended after it and was skipped: it is part of the gap.
            gap = CaptureGap(gap.reason, gap.started_at, gap.ended_at, bytes=gap.bytes,
                             chunks=gap.chunks, events=gap.events + 1, session_id=gap.session_id,
                             exchange_id=gap.exchange_id, stream_id=gap.stream_id,
                             start_offset=gap.start_offset)
        self.sink.record_gap(gap)

    def _resync(self, stream: StreamState, data: bytes) -> bytes:
        """Skip the rest of an event cut by a gap; returns the bytes after its blank line."""
        joined = stream.resync_tail + data
        ends = [i for i in (joined.find(b"\n\n"), joined.find(b"\n\r\n")) if i >= 0]
        if not ends:
            stream.resync_tail = joined[-2:]
            stream.parser = SseParser.continued(stream.byte_count)
            return b""
        end = min(ends)
        end += 2 if joined[end + 1:end + 2] == b"\n" else 3
        consumed = end - len(stream.resync_tail)
        stream.resync, stream.resync_tail = False, b""
        stream.parser = SseParser.continued(stream.byte_count - len(data) + consumed)
        self._record_pending_gap(stream, resynced=True)
        return data[consumed:]

    def _resume(self, flow_id: str, t: float, request: Fact, headers: Fact | None,
                offset: int, recorded: int | None) -> None:
        """A flow that was open when the previous worker died: record it as a new exchange
        (and stream) of the same capture, its bytes counted from `offset` on the wire, and
        what the dead worker never stored (`recorded` is what it did) as a gap."""
        if flow_id in self.flows:
            return
        self._request(*request[1:9], body_size=request[9] if len(request) > 9 else None)
        if headers is not None:
            self._response_headers(*headers[1:])
        flow = self.flows.get(flow_id)
        if flow is None:
            return
        start = recorded if recorded is not None and recorded <= offset else None
        if flow.stream is not None:
            stream = flow.stream
            stream.byte_count = stream.stored_offset = start if start is not None else 0
            if start is None:
                start = 0
            self._gap(flow_id, t, t, offset - start, 0, None, WORKER_DIED)
            if offset - start == 0:
                stream.resync = False
                stream.pending_gap = None
                stream.parser = SseParser.continued(offset)
        elif offset:
            self._gap(flow_id, t, t, offset, 0, None, WORKER_DIED)

