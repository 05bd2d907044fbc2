"""The benchmark's SSE client (`bench/stream_bench.py`): one stream through a port, events
counted and per-event latency measured, parsing no more than our own server's output needs."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stream_harness import Config


@dataclass
class StreamResult:
    events: int
    comments: int
    started: float
    first_at: float
    last_at: float
    latencies: array[float]  # seconds, one per event
    complete: bool
    status: int

    @property
    def seconds(self) -> float:
        return max(self.last_at - self.started, 1e-9)

    @property
    def eps(self) -> float:
        return self.events / self.seconds


class _SseClient(asyncio.Protocol):
    """Reads one SSE response: HTTP/1.1 head, chunked (or close-delimited) body, events.

    Parsing is the minimum our own server's output needs (CRLF lines, events start with
    `event: message`, `t` is the last number before `}`), so the client is never the
    bottleneck: it must be much faster than the slowest thing measured.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, marks: Sequence[int],
                 on_mark: Callable[[int], None] | None) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.body = bytearray()
        self.head_done = False
        self.chunked = False
        self.ended = False
        self.remaining = 0
        self.need_crlf = False
        self.status = 0
        self.events = 0
        self.comments = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.latencies: array[float] = array("d")
        self.marks = sorted(marks)
        self.on_mark = on_mark

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()  # one arrival time for everything in this read: it came together
        if self.head_done and not self.chunked:
            self.body += data
        else:
            self.raw += data
            if not self.head_done and not self._head():
                return
            if self.chunked:
                self._dechunk()
            else:
                self.body += self.raw
                self.raw.clear()
        self._events(now)
        if self.ended:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            self._events(time.time())
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def _head(self) -> bool:
        end = self.raw.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.raw[:end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        del self.raw[:end + 4]
        self.head_done = True
        return True

    def _dechunk(self) -> None:
        raw = self.raw
        pos = 0
        size_raw = len(raw)
        while not self.ended:
            if self.remaining:
                take = min(self.remaining, size_raw - pos)
                if not take:
                    break
                self.body += raw[pos:pos + take]
                pos += take
                self.remaining -= take
                if self.remaining:
                    break
                self.need_crlf = True
            if self.need_crlf:
                if size_raw - pos < 2:
                    break
                pos += 2
                self.need_crlf = False
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if size == 0:
                self.ended = True
            self.remaining = size
        del raw[:pos]

    def _events(self, now: float) -> None:
        body = self.body
        find = body.find
        start = 0
        before = self.events
        while True:
            end = find(b"\r\n\r\n", start)
            if end < 0:
                break
            if body.startswith(b"event: message", start):
                i = find(b'"t":', start, end)
                j = find(b"}", i, end)
                self.latencies.append(now - float(body[i + 4:j]))
                self.events += 1
                if self.marks and self.events >= self.marks[0]:
                    self.marks.pop(0)
                    if self.on_mark is not None:
                        self.on_mark(self.events)
            else:
                self.comments += 1
            start = end + 4
        if start:
            del body[:start]
        if self.events != before:
            if not before:
                self.first_at = now
            self.last_at = now


async def fetch(port: int, shape: Config, *, n: int, rate: float = 0.0,
                marks: Sequence[int] = (),
                on_mark: Callable[[int], None] | None = None) -> StreamResult:
    """GET one SSE stream of `n` events through `port` and measure it (`shape` gives the
    server's ping interval, events per write and chunk split)."""
    loop = asyncio.get_running_loop()
    # Bounded: a burst gets 2000 events/s at the very least, a paced stream twice its length.
    timeout = 30.0 + (n / rate * 2 if rate > 0 else n / 2000)
    started = time.time()
    transport, client = await loop.create_connection(
        lambda: _SseClient(loop, marks, on_mark), "127.0.0.1", port)
    query = f"n={n}&rate={rate}&ping={shape.ping}&group={shape.group}&split={shape.split}"
    transport.write(f"GET /sse?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Accept: text/event-stream\r\nCache-Control: no-store\r\n"
                    "User-Agent: ssetap-bench\r\n\r\n".encode())
    try:
        await asyncio.wait_for(asyncio.shield(client.done), timeout)
    except TimeoutError:
        pass
    finally:
        transport.close()
    return StreamResult(client.events, client.comments, started, client.first_at or started,
                        client.last_at or started, client.latencies,
                        client.ended and client.events == n, client.status)
