"""The wire protocol between the proxy (recorder.addon) and the recording process (recorder.worker).

Design notes:
- The proxy's hot path (the stream tap) must stay a timestamp and an append, so facts travel as
  plain tuples whose first element is a one-letter code; this module is the one place that
  names the codes, says what each tuple holds, frames batches and unframes them.
- A frame is an 8-byte big-endian length and a `marshal`-encoded list of facts. Eight bytes, so
  a frame of any size is representable (a 4-byte length overflowed at 4 GiB and killed the
  sender). `marshal` is the cheapest serialiser of tuples of str/bytes/float/int/None in
  CPython, and both ends run the same interpreter.
- End of input means "stop": the worker flushes everything and exits.
- Gap facts (`GAP`) say what the proxy shed instead of queueing: which flow, the time span,
  bytes, chunks and SSE event terminators, and why. The worker turns them into `capture_gaps`
  rows and `capture-gap` flags. Resume facts (`RESUME`) re-introduce flows that were open when
  a worker died, so a restarted worker can go on recording them into the same capture.
"""

from __future__ import annotations

import marshal
from dataclasses import dataclass
from typing import Any, Final

from recorder.gaps import GAP_REASONS, OVERLOAD, STOPPED, WORKER_DIED, WRITE_FAILED

# Fact codes, with the tuple each one heads:
REQUEST: Final = "q"           # (q, flow, t, method, url, http_version, headers, body, client_addr, body_size)
RESPONSE_HEADERS: Final = "h"  # (h, flow, t, status, reason, headers, streamed)
CHUNK: Final = "c"             # (c, flow, t, data)
END: Final = "e"               # (e, flow, t, body)  body None when it was streamed through the tap
ERROR: Final = "x"             # (x, flow, t, message)  the flow failed (disconnect, upstream down)
TICK: Final = "t"              # (t, t)  the proxy's clock
GAP: Final = "g"               # (g, flow, t_start, t_end, bytes, chunks, events, reason, offset, tail)
#                                offset None: where the flow's bytes are now; tail: the last
#                                three shed bytes (does the gap end at an event's blank line,
#                                or does one straddle its end?)
RESUME: Final = "r"            # (r, flow, t, request fact, response-headers fact or None, offset)
INJECTION: Final = "f"         # (f, flow, t, injection)  `--fault` changed this flow on purpose;
#                                injection: JSON of recorder.faults.Injection

Fact = tuple[Any, ...]

# Gap reasons travel in gap facts; recorder.gaps owns them (re-exported for the addon).
__all__ = ["GAP_REASONS", "OVERLOAD", "STOPPED", "WORKER_DIED", "WRITE_FAILED"]

# Facts shed under pressure are only chunks (and request bodies): the structural facts of a
# flow are small and keep the capture's shape (every exchange and stream, opened and closed).
SHEDDABLE: Final = frozenset({CHUNK})

LENGTH_BYTES: Final = 8

# The proxy's limits on unrecorded data (`ssetap record --max-backlog/--max-lag/--stop-timeout`).
DEFAULT_MAX_BACKLOG: Final = 256 * 1024 * 1024
DEFAULT_MAX_LAG: Final = 2.0
DEFAULT_STOP_TIMEOUT: Final = 10.0
FRAME_HEADER_SIZE: Final = LENGTH_BYTES


def fact_size(fact: Fact) -> int:
    """Approximate bytes a fact holds in memory (payload plus a fixed overhead per tuple)."""
    code = fact[0]
    if code == CHUNK:
        return len(fact[3]) + 200
    if code == REQUEST:
        body = fact[7]
        return (len(body) if body else 0) + 1000
    if code == END:
        body = fact[3]
        return (len(body) if body else 0) + 200
    return 400


def fact_time(fact: Fact) -> float:
    """When the proxy saw a fact (a gap fact: when its span ended)."""
    code = fact[0]
    return float(fact[3] if code == GAP else fact[1] if code == TICK else fact[2])


def sse_terminators(data: bytes, tail: bytes = b"") -> int:
    """Blank lines that end an SSE event in `data`, given the stream's bytes before it (`tail`).

    Counts `\\n\\n` (LF streams) and `\\n\\r\\n` (CRLF streams); a lone-CR stream is not counted.
    `tail` is up to the two bytes before `data`, so a terminator split across two chunks is
    counted once, in the chunk where it ends.
    """
    joined = tail[-2:] + data
    count = joined.count(b"\n\n") + joined.count(b"\n\r\n")
    if tail:
        head = tail[-2:]
        count -= head.count(b"\n\n") + head.count(b"\n\r\n")
    return count


def encode_frame(facts: list[Fact]) -> bytes:
    """One frame: an 8-byte length and the marshalled facts."""
    payload = marshal.dumps(facts)
    return len(payload).to_bytes(LENGTH_BYTES, "big") + payload


def decode_frame(payload: bytes) -> list[Fact]:
    facts = marshal.loads(payload)
    if not isinstance(facts, list):
        raise WireError("a frame that is not a list of facts")
    return facts


class WireError(Exception):
    """Bytes on the worker's input that are not ssetap frames."""


class FrameReader:
    """Splits a byte stream into length-prefixed frames; bounded by the largest frame."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        start = 0
        buf = self._buf
        while len(buf) - start >= LENGTH_BYTES:
            size = int.from_bytes(buf[start:start + LENGTH_BYTES], "big")
            end = start + LENGTH_BYTES + size
            if len(buf) < end:
                break
            out.append(bytes(buf[start + LENGTH_BYTES:end]))
            start = end
        if start:
            del buf[:start]
        return out


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """How much unrecorded data the proxy may hold, and how long stopping may take."""

    max_backlog: int = DEFAULT_MAX_BACKLOG
    max_lag: float = DEFAULT_MAX_LAG
    stop_timeout: float = DEFAULT_STOP_TIMEOUT


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """How a recording ended, as the proxy saw it."""

    complete: bool
    shed_chunks: int
    shed_bytes: int
    shed_gaps: int
    restarts: int
    worker_exit: int | None
