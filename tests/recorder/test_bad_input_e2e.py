"""Bad input through the real recorder: traffic flows untouched, the capture keeps what it saw."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from tests.recorder.capture_query import q


def sse_head(extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            + extra + b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def stream_server(raw_server, pieces: list[bytes], delay: float = 0.0):
    """A server answering GET with an SSE stream written in exactly these pieces."""

    async def responder(method, path, headers, body, writer):
        writer.write(sse_head())
        for piece in pieces:
            writer.write(chunk(piece))
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    return raw_server(responder)


TRICKY = [
    b"\xef\xbb",  # a BOM split across chunks
    b"\xbf: hello\r",
    b"\nevent: message\rdata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\r",
    b"\n\r\n",
    b"data: not json at all\n\n",
    b"data: {\"jsonrpc\": \"2.0\", \"id\": 5, \"result\": {}}\n\n",  # an orphan response
    b"\x00\xff garbage \xfe\n\n",
    b"data: [1, 2\n\n",
    b"data: half an event with no end",
]


def test_stream_bytes_reach_the_client_unchanged_and_malformed_sse_is_recorded(record, raw_server):
    server = stream_server(raw_server, TRICKY)
    rec = record(server.url)
    received = httpx.get(rec.url + "/sse", headers={"Accept": "text/event-stream"}).content
    assert received == b"".join(TRICKY)
    assert rec.stop() == 0
    db = rec.db
    kinds = [k for (k,) in q(db, "SELECT kind FROM sse_events ORDER BY id")]
    assert kinds[0] == "comment"
    # The garbage line has no colon: an unknown field (WHATWG), so its block fires nothing.
    assert kinds.count("event") == 4
    assert kinds[-1] == "incomplete"  # the unterminated event at close is kept as truncated
    assert q(db, "SELECT truncated FROM streams") == [(1,)]
    problems = [p for (p,) in q(db, "SELECT problem FROM messages WHERE kind='invalid'")]
    assert len(problems) == 2 and all("invalid JSON" in p for p in problems), problems
    # Raw chunks, as stored, are the bytes on the wire.
    raw = b"".join(d for (d,) in q(db, "SELECT data FROM chunks ORDER BY offset"))
    assert raw == b"".join(TRICKY)


def test_events_reach_the_client_as_they_are_sent(record, raw_server):
    pieces = [b"data: one\n\n", b"data: two\n\n"]
    server = stream_server(raw_server, pieces, delay=0.6)
    rec = record(server.url)
    arrivals: list[float] = []
    began = time.monotonic()
    with httpx.stream("GET", rec.url + "/sse") as reply:
        for line in reply.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - began)
    rec.stop()
    assert len(arrivals) == 2
    # The first event arrives long before the server's second write: nothing buffers it.
    assert arrivals[0] < 0.4 and arrivals[1] - arrivals[0] > 0.4
    times = [t for (t,) in q(rec.db, "SELECT t FROM sse_events ORDER BY id")]
    assert times[1] - times[0] > 0.5


def test_a_ten_megabyte_event_passes_and_is_recorded(record, raw_server):
    payload = b"data: " + b"x" * (10 * 1024 * 1024) + b"\n\n"
    pieces = [payload[i:i + 65536] for i in range(0, len(payload), 65536)] + [b"data: after\n\n"]
    server = stream_server(raw_server, pieces)
    rec = record(server.url)
    received = httpx.get(rec.url + "/sse", timeout=30).content
    assert received == payload + b"data: after\n\n"
    rec.stop()
    sizes = q(rec.db, "SELECT length(data) FROM sse_events WHERE kind='event' ORDER BY id")
    assert sizes == [(10 * 1024 * 1024,), (5,)]


def test_invalid_json_posts_are_recorded_and_forwarded(record, raw_server):
    seen: list[bytes] = []

    async def responder(method, path, headers, body, writer):
        seen.append(body)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\n\r\n{}")
        await writer.drain()

    server = raw_server(responder)
    rec = record(server.url)
    bad = b'{"jsonrpc": "2.0", "id": 1, "method": '
    reply = httpx.post(rec.url + "/mcp", content=bad, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert seen == [bad]
    rec.stop()
    assert q(rec.db, "SELECT status, request_body FROM exchanges") == [(400, bad)]


def test_client_disconnect_mid_stream(record, raw_server):
    async def responder(method, path, headers, body, writer):
        writer.write(sse_head())
        writer.write(chunk(b"data: first\n\n"))
        await writer.drain()
        await asyncio.sleep(30)  # the client leaves before this ends

    server = raw_server(responder)
    rec = record(server.url)
    with httpx.stream("GET", rec.url + "/sse") as reply:
        for line in reply.iter_lines():
            if line.startswith("data:"):
                break
    time.sleep(0.5)
    rec.stop()
    assert q(rec.db, "SELECT close_reason, events FROM streams") == [("client-disconnect", 1)]
    ((error,),) = q(rec.db, "SELECT error FROM exchanges")
    assert "disconnect" in error.lower()


def test_upstream_down_gives_502_and_a_failed_exchange(record):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rec = record(f"http://127.0.0.1:{port}")
    reply = httpx.post(rec.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert reply.status_code == 502
    rec.stop()
    ((status, error, mcp),) = q(rec.db, "SELECT status, error, mcp FROM exchanges")
    assert error and mcp == 1
    # The request was still recorded as a message of a session, unanswered.
    assert q(rec.db, "SELECT method, outcome FROM calls") == [("ping", "pending")]


def test_garbage_http_response_does_not_stop_the_recorder(record, raw_server):
    async def responder(method, path, headers, body, writer):
        writer.write(b"\x00\x01\x02 not http at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = raw_server(responder)
    rec = record(server.url)
    reply = httpx.get(rec.url + "/x")
    assert reply.status_code == 502
    # ...and the recorder still records what comes next.
    reply = httpx.get(rec.url + "/y")
    rec.stop()
    assert rec.returncode == 0
    assert len(q(rec.db, "SELECT id FROM exchanges")) == 2


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signals_flush_and_exit_zero(record, raw_server, sig):
    import signal

    server = stream_server(raw_server, [b"data: x\n\n"])
    rec = record(server.url)
    httpx.get(rec.url + "/sse")
    assert rec.stop(getattr(signal, sig)) == 0
    assert q(rec.db, "SELECT count(*) FROM sse_events") == [(1,)]
