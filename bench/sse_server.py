"""A minimal, fast SSE producer for `bench/stream_bench.py` (raw asyncio streams, HTTP/1.1).

Run: `python bench/sse_server.py [--host 127.0.0.1] [--port 0]`. It prints the bound port on
stdout (one line) and serves until stdin closes or SIGTERM/SIGINT arrives.

`GET /sse?n=N&rate=R&ping=P&group=G&split=B` answers `text/event-stream` with chunked
transfer encoding (what uvicorn and the MCP SDKs send) and writes N events:

    event: message\\r\\ndata: {"jsonrpc":"2.0","method":"notifications/message",...,
                             "data":{"seq":S,"t":T}}}\\r\\n\\r\\n

about 150 bytes each, like an MCP logging notification, so the recorder does its real work on
them (SSE parse, JSON-RPC decode, one sse_events + one messages + one chunks row). `t` is
`time.time()` taken just before the write: the client subtracts it from its arrival time
(same machine, same clock) to get per-event latency.

- rate=0 (default) is a burst: write as fast as the reader drains. rate=R paces the stream at
  R events/s (for latency without queueing).
- group=G puts G events in one write (one HTTP chunk); default 1, the usual case for an SDK
  server, and the worst case for a proxy, whose cost is per chunk.
- split=B cuts each write into HTTP chunks of at most B bytes (events split across chunks).
- ping=P adds a `: ping` comment after every P events (heartbeats are comments); 0 disables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from urllib.parse import parse_qs, urlsplit

_HEAD = (b"HTTP/1.1 200 OK\r\n"
         b"content-type: text/event-stream\r\n"
         b"cache-control: no-store\r\n"
         b"transfer-encoding: chunked\r\n"
         b"connection: close\r\n\r\n")
EVENT = (b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
          b'"params":{"level":"info","logger":"bench","data":{"seq":%d,"t":%.6f}}}\r\n\r\n')
_PING = b": ping\r\n\r\n"
_END = b"0\r\n\r\n"


def _chunk(payload: bytes, split: int) -> bytes:
    """Frame `payload` as one HTTP chunk, or several of at most `split` bytes."""
    if split <= 0 or len(payload) <= split:
        return b"%x\r\n%s\r\n" % (len(payload), payload)
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                    for part in (payload[i:i + split] for i in range(0, len(payload), split)))


def _param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    return int(values[0]) if values else default


async def _send_events(writer: asyncio.StreamWriter, n: int, rate: float, ping: int,
                       group: int, split: int) -> None:
    clock = time.time
    pending: list[bytes] = []
    start = time.monotonic()
    seq = 0
    while seq < n:
        if rate > 0:
            # Paced: sleep until the next event is due, then send every event that is due
            # (sleep granularity is ~1 ms, so a few events can share a tick).
            due = start + seq / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            last = min(n, int((time.monotonic() - start) * rate) + 1)
        else:
            last = n
        while seq < last:
            pending.append(EVENT % (seq, clock()))
            seq += 1
            if ping and seq % ping == 0:
                pending.append(_PING)
            if len(pending) >= group or seq == n:
                writer.write(_chunk(b"".join(pending), split))
                pending.clear()
                # drain() returns at once unless the transport is over its high-water mark,
                # so the burst runs at exactly the pace the reader (proxy or client) drains.
                await writer.drain()
        if pending:  # paced: what is due goes out now, even if the group is not full
            writer.write(_chunk(b"".join(pending), split))
            pending.clear()
            await writer.drain()
    writer.write(_END)
    await writer.drain()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _ = request_line.split(" ", 2)
        parts = urlsplit(target)
        if method != "GET" or parts.path != "/sse":
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"
                         b"connection: close\r\n\r\n")
            await writer.drain()
            return
        query = parse_qs(parts.query)
        writer.write(_HEAD)
        await _send_events(writer, n=_param(query, "n", 1000),
                           rate=float(query.get("rate", ["0"])[0]), ping=_param(query, "ping", 0),
                           group=max(1, _param(query, "group", 1)),
                           split=_param(query, "split", 0))
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
            ConnectionError):
        pass  # a client that went away or sent garbage: nothing to report in a benchmark
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _main(host: str, port: int) -> None:
    server = await asyncio.start_server(_handle, host, port, backlog=128)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # End with the parent: stdin reaches EOF when the benchmark exits, however it exits.
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stop.set())
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
