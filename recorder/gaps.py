"""What a recording could not keep: capture gaps, interrupted recordings, and their flags.

A gap is data that passed through the proxy untouched but is missing from the capture, with
why (`overload`, `worker-died`, `write-failed`, `stopped`). The recorder never hides one: each
is a `capture_gaps` row and a `capture-gap` flag (error), and `ssetap record` exits 3 when any
was recorded. A capture whose recorder was killed (no clean close) is marked the next time it
is opened for writing: its open streams get `close_reason = 'recorder-crash'` and a
`recording-interrupted` flag (error).

These flags are raised by the recorder itself (flag `source = 'recorder'`), not by the
stream-health detectors; their kinds are named here so the detectors' registry can list them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

# Reasons a gap was recorded (the `capture_gaps.reason` column).
OVERLOAD: Final = "overload"
WORKER_DIED: Final = "worker-died"
WRITE_FAILED: Final = "write-failed"
STOPPED: Final = "stopped"
GAP_REASONS: Final = (OVERLOAD, WORKER_DIED, WRITE_FAILED, STOPPED)

CAPTURE_GAP: Final = "capture-gap"
RECORDING_INTERRUPTED: Final = "recording-interrupted"
FLAG_SOURCE: Final = "recorder"

# (kind, severity, summary, usual cause): the rows for the flag-kind registry.
FLAG_KINDS: Final = (
    (CAPTURE_GAP, "error", "traffic passed through but part of it is missing from the capture",
     "the recorder shed data under overload, its worker died, the disk was full or "
     "the recording stopped before everything was written"),
    (RECORDING_INTERRUPTED, "error", "the recorder was killed while this stream was open",
     "kill -9, a crash or a power loss of `ssetap record`; the stream's tail may be missing"),
)

# Meta key and values that tell a clean close from a crash.
STATE_KEY: Final = "recording_state"
RECORDING: Final = "recording"
COMPLETE: Final = "complete"
INCOMPLETE: Final = "incomplete"
INTERRUPTED: Final = "interrupted"


@dataclass(frozen=True, slots=True)
class CaptureGap:
    """Data missing from a capture: where (session, exchange, stream, byte range), how much
    (bytes, chunks, SSE events when known) and when."""

    reason: str
    started_at: float
    ended_at: float
    bytes: int = 0
    chunks: int = 0
    events: int | None = None
    session_id: int | None = None
    exchange_id: int | None = None
    stream_id: int | None = None
    start_offset: int | None = None
    details: str | None = None

    @property
    def t(self) -> float:
        """When the gap ended: where the checks see it in time (recorder.events)."""
        return self.ended_at

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CaptureGap:
        """A stored `capture_gaps` row as the value the recorder recorded."""
        return cls(row["reason"], row["started_at"], row["ended_at"], bytes=row["bytes"] or 0,
                   chunks=row["chunks"] or 0, events=row["events"],
                   session_id=row["session_id"], exchange_id=row["exchange_id"],
                   stream_id=row["stream_id"], start_offset=row["start_offset"],
                   details=row["details"])

    @property
    def end_offset(self) -> int | None:
        return None if self.start_offset is None else self.start_offset + self.bytes

    def describe(self) -> str:
        what = f"{self.chunks:,} chunks, {self.bytes:,} bytes"
        if self.events:
            what += f", {self.events:,} SSE events"
        where = f" of stream {self.stream_id}" if self.stream_id is not None else (
            f" of exchange {self.exchange_id}" if self.exchange_id is not None else "")
        span = max(0.0, self.ended_at - self.started_at)
        return f"{what}{where} not recorded ({self.reason}) over {span:.1f} s"

    def row(self, gap_id: int) -> dict[str, Any]:
        return {"id": gap_id, "session_id": self.session_id, "exchange_id": self.exchange_id,
                "stream_id": self.stream_id, "start_offset": self.start_offset,
                "end_offset": self.end_offset, "bytes": self.bytes, "chunks": self.chunks,
                "events": self.events, "started_at": self.started_at,
                "ended_at": self.ended_at, "reason": self.reason, "details": self.details}

    def flag_row(self, flag_id: int, gap_id: int) -> dict[str, Any]:
        return {"id": flag_id, "session_id": self.session_id, "stream_id": self.stream_id,
                "exchange_id": self.exchange_id, "t": self.started_at, "kind": CAPTURE_GAP,
                "severity": "error", "message": self.describe(),
                "details": f'{{"gap_id":{gap_id},"reason":"{self.reason}"}}',
                "source": FLAG_SOURCE}


def incomplete_line(events: int, gaps: int) -> str:
    """The one summary line of an incomplete recording."""
    return (f"recording incomplete: {events:,} events in {gaps:,} "
            f"gap{'s' if gaps != 1 else ''}; see ssetap check")
