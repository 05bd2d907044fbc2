"""Fault injection on SSE streams, pure: a `StreamFilter` turns the bytes a server wrote into
the bytes the client gets, block by block, as the stream faults of `recorder.faults` say.
"""

# Design notes: the rules this module keeps, and why.
# - Sans-IO: bytes and the time in, bytes, injections and "close now" out. The shells (the
#   proxy's fault addon, the mock's middleware) own writing, closing and the idle timer.
# - Blocks, never bytes: an incomplete SSE block is kept until its blank line (or the end),
#   so a dropped comment or a stripped `id:` line never splits an event; any chunking of the
#   same stream gives the same output (tests feed every split).
# - Legacy HTTP+SSE answers travel on the session's GET stream: the filter learns the session
#   id from the `endpoint` event, and drops (hang) or replaces (error) answers it is told of.

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from recorder.faults import FaultPlan, FaultSpec, Injection, RequestAction


@dataclass(frozen=True, slots=True)
class FilterOutput:
    """What a stream filter made of a chunk: bytes to send, what it did, whether to close."""

    data: bytes
    injections: tuple[Injection, ...] = ()
    close: bool = False


_LEGACY_SESSION = re.compile(rb"session_?id=([^&\s\"]+)", re.IGNORECASE)


class StreamFilter:
    """Applies the stream faults to one SSE response stream, block by block."""

    def __init__(self, plan: FaultPlan, key: str | None, now: float) -> None:
        self.plan = plan
        self.key = key
        self._by_kind = {s.kind: s for s in plan.stream_specs()}
        plan.see(key, now)
        self._pending = b""  # bytes of the block being read
        self._held = bytearray()  # buffer: bytes held for the next burst
        self._held_since: float | None = None
        self.events = 0
        self.cut = False
        self.last_activity = now  # idle-cut counts from the stream's opening
        # Legacy SSE: the session id the `endpoint` event announced, once seen.
        self.legacy_session: str | None = None
        # Responses to change on this stream (legacy SSE carries them): id key -> action.
        self.response_actions: dict[str, RequestAction] = {}

    def spec(self, kind: str) -> FaultSpec | None:
        return self._by_kind.get(kind)

    def _on(self, now: float) -> bool:
        return self.plan.active(self.key, now)

    @property
    def idle_seconds(self) -> float | None:
        spec = self._by_kind.get("idle-cut")
        return spec.seconds if spec else None

    def feed(self, data: bytes, now: float) -> FilterOutput:
        """Bytes from the server (b"" = end of stream) -> bytes for the client."""
        if self.cut:
            return FilterOutput(b"")
        end = data == b""
        if data:
            self.last_activity = now
        self._pending += data
        out = bytearray()
        injections: list[Injection] = []
        close = False
        while True:
            block, rest = _split_block(self._pending, end)
            if block is None:
                break
            self._pending = rest
            kept, block_injections, is_event = self._block(block, now)
            out += kept
            injections += block_injections
            if is_event:
                self.events += 1
                cut = self.spec("cut-stream")
                if cut and cut.count is not None and self.events >= cut.count and self._on(now):
                    injections.append(Injection(cut.text, cut.kind, "cut", now,
                                                {"after_events": self.events}))
                    self.cut = close = True
                    self._pending = b""
                    break
        if end and self._pending:
            out += self._pending
            self._pending = b""
        data_out = bytes(out)
        if "buffer" in self._by_kind:
            data_out, released = self._buffered(data_out, now, end or close)
            injections += released
        return FilterOutput(data_out, tuple(injections), close)

    def _buffered(self, data: bytes, now: float, final: bool) -> tuple[bytes, list[Injection]]:
        # A buffering proxy: hold bytes and let them out in one burst at the first chunk
        # after DURATION (and at the end). The proxy cannot write without the server writing,
        # so a burst leaves with the first server write after the deadline.
        spec = self._by_kind["buffer"]
        assert spec.seconds is not None
        if not self._held and not self._on(now):
            return data, []
        self._held += data
        if self._held_since is None and self._held:
            self._held_since = now
        if not self._held or self._held_since is None:
            return b"", []
        if final or now - self._held_since >= spec.seconds or not self._on(now):
            burst = bytes(self._held)
            held_for = now - self._held_since
            self._held.clear()
            self._held_since = None
            return burst, [Injection(spec.text, spec.kind, "released", now,
                                     {"bytes": len(burst), "held_seconds": round(held_for, 3)})]
        return b"", []

    def _block(self, block: bytes, now: float) -> tuple[bytes, list[Injection], bool]:
        """One SSE block (lines with their terminators, ending with the blank line)."""
        lines = _lines(block)
        is_event = any(_field(line) == b"data" for line in lines)
        if is_event and self.legacy_session is None:
            self._learn_legacy_session(lines)
        on = self._on(now)
        injections: list[Injection] = []
        kept: list[bytes] = []
        drop_comments = on and "drop-heartbeats" in self._by_kind
        strip_ids = on and "strip-event-ids" in self._by_kind
        for line in lines:
            name = _field(line)
            if drop_comments and line.startswith(b":"):
                spec = self._by_kind["drop-heartbeats"]
                injections.append(Injection(spec.text, spec.kind, "dropped-comment", now,
                                            {"text": line.rstrip(b"\r\n").decode("utf-8",
                                                                                 "replace")}))
                continue
            if strip_ids and name == b"id":
                spec = self._by_kind["strip-event-ids"]
                injections.append(Injection(spec.text, spec.kind, "stripped-id", now, {
                    "id": line.rstrip(b"\r\n")[3:].strip().decode("utf-8", "replace")}))
                continue
            kept.append(line)
        if is_event and self.response_actions:
            replaced = self._respond(kept, now)
            if replaced is not None:
                kept, injection = replaced
                injections.append(injection)
                is_event = bool(kept)
        if all(_is_blank(line) for line in kept) and len(kept) < len(lines):
            kept = []  # the block carried only what was removed: drop its blank line too
        return b"".join(kept), injections, is_event

    def _learn_legacy_session(self, lines: list[bytes]) -> None:
        if not any(line.rstrip(b"\r\n") == b"event: endpoint" for line in lines):
            return
        for line in lines:
            if _field(line) == b"data":
                match = _LEGACY_SESSION.search(line)
                if match:
                    self.legacy_session = match.group(1).decode("ascii", "replace")
                    self.plan.alias(self.legacy_session, self.key)

    def _respond(self, lines: list[bytes], now: float) -> tuple[list[bytes], Injection] | None:
        """Legacy SSE: drop (hang) or replace (error) the response to a faulted request."""
        data = b"\n".join(_value(line) for line in lines if _field(line) == b"data")
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or "method" in obj or "id" not in obj:
            return None
        key = orjson.dumps(obj["id"]).decode()
        action = self.response_actions.pop(key, None)
        if action is None:
            return None
        if action.action == "hang":
            return [], Injection(action.spec.text, action.spec.kind, "dropped-response", now,
                                 {"id": obj["id"]})
        newline = b"\r\n" if lines and lines[0].endswith(b"\r\n") else b"\n"
        out = [line for line in lines if _field(line) not in (b"data", b"")]
        out += [b"data: " + action.error_body() + newline, newline]
        return out, Injection(action.spec.text, action.spec.kind, "replaced-response", now,
                              {"id": obj["id"], "code": action.code})

    def idle_expired(self, now: float) -> Injection | None:
        """idle-cut: has the stream been silent for DURATION? (The shell then closes it.)"""
        spec = self._by_kind.get("idle-cut")
        if spec is None or self.cut or spec.seconds is None:
            return None
        if now - self.last_activity >= spec.seconds and self._on(now):
            self.cut = True
            return Injection(spec.text, spec.kind, "idle-cut", now,
                             {"idle_seconds": round(now - self.last_activity, 3)})
        return None


def _split_block(buf: bytes, end: bool) -> tuple[bytes | None, bytes]:
    """The first complete SSE block of `buf` (through its blank line) and the rest."""
    pos = 0
    line_start = 0
    n = len(buf)
    while pos < n:
        c = buf[pos]
        if c in (0x0A, 0x0D):
            nxt = pos + 1
            if c == 0x0D:
                if nxt >= n and not end:
                    return None, buf  # a CR at the end: wait for a possible LF
                if nxt < n and buf[nxt] == 0x0A:
                    nxt += 1
            if pos == line_start:  # a blank line ends the block
                return buf[:nxt], buf[nxt:]
            line_start = pos = nxt
            continue
        pos += 1
    return None, buf


def _lines(block: bytes) -> list[bytes]:
    """A block's lines, each with its own terminator (CR, LF or CRLF)."""
    out = []
    start = 0
    i = 0
    n = len(block)
    while i < n:
        c = block[i]
        if c in (0x0A, 0x0D):
            j = i + 1
            if c == 0x0D and j < n and block[j] == 0x0A:
                j += 1
            out.append(block[start:j])
            start = i = j
            continue
        i += 1
    if start < n:
        out.append(block[start:])
    return out


def _is_blank(line: bytes) -> bool:
    return line in (b"\n", b"\r", b"\r\n", b"")


def _field(line: bytes) -> bytes:
    text = line.rstrip(b"\r\n")
    if not text or text.startswith(b":"):
        return b""
    return text.split(b":", 1)[0]


def _value(line: bytes) -> bytes:
    text = line.rstrip(b"\r\n")
    _, _, value = text.partition(b":")
    return value[1:] if value.startswith(b" ") else value
