"""The engine against a raw HTTP server that does what SDK servers rarely do on demand:
drop a stream mid-call (resume with the live Last-Event-ID), never answer, fail with 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from test_replay_plan import Script, handshake

from replay.engine import ReplayOptions, replay_plans
from replay.plan import build_plan
from replay.results import ERROR, MATCH, MISSING

JSON = "application/json"


def _head(status: str, ctype: str | None, extra: str = "", length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _json(writer: asyncio.StreamWriter, body: dict[str, Any], extra: str = "") -> None:
    data = json.dumps(body).encode()
    writer.write(_head("200 OK", JSON, extra, len(data)) + data)
    await writer.drain()


class FakeServer:
    """A Streamable HTTP server scripted per tool name; records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.live_ids: dict[str, Any] = {}

    async def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes,
                       writer: asyncio.StreamWriter) -> None:
        message = json.loads(body) if body else None
        self.requests.append((method, headers, message))
        if method == "DELETE":
            writer.write(_head("200 OK", None, length=0))
        elif method == "GET" and "last-event-id" not in headers:
            writer.write(_head("405 Method Not Allowed", None, length=0))
        elif method == "GET":
            # The resumption: the rest of the dropped stream, then the end.
            live_id = self.live_ids["flaky"]
            writer.write(_head("200 OK", "text/event-stream", "Connection: close"))
            payload = json.dumps({"jsonrpc": "2.0", "id": live_id,
                                  "result": {"content": [], "isError": False}})
            writer.write(f"id: ev-2\ndata: {payload}\n\n".encode())
            writer.close()
        elif message.get("method") == "initialize":
            await _json(writer, {"jsonrpc": "2.0", "id": message["id"],
                                 "result": {"protocolVersion": "2025-11-25"}},
                        "mcp-session-id: live-session-1")
        elif "method" not in message or "id" not in message:
            writer.write(_head("202 Accepted", None, length=0))
        else:
            await self.tool(message, writer)
        await writer.drain()

    async def tool(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        name = message["params"]["name"]
        self.live_ids[name] = message["id"]
        if name == "flaky":
            # A priming event with an id, then the connection drops before the response.
            writer.write(_head("200 OK", "text/event-stream", "Connection: close"))
            writer.write(b"id: ev-1\nretry: 10\ndata: \n\n")
            await writer.drain()
            writer.close()
        elif name == "silent":
            writer.write(_head("200 OK", "text/event-stream"))  # ... and nothing more
        elif name == "broken":
            writer.write(_head("500 Internal Server Error", "text/plain", length=4) + b"oops")
        else:
            await _json(writer, {"jsonrpc": "2.0", "id": message["id"],
                                 "result": {"content": [], "isError": False}})


def _script() -> Script:
    s = Script()
    handshake(s)
    s.request(0.03, 1, "tools/call", {"name": "flaky"})
    s.respond(0.04, 1, {"content": [], "isError": False})
    s.request(0.05, 2, "tools/call", {"name": "hang"})
    s.notify(0.06, "notifications/cancelled", {"requestId": 2})
    s.request(0.07, 3, "tools/call", {"name": "broken"})
    s.respond(0.08, 3, {"content": [], "isError": False})
    s.request(0.09, 4, "tools/call", {"name": "silent"})
    s.respond(0.10, 4, {"content": [], "isError": False})
    return s


async def test_engine_rewrites_live_values_and_reports_failures(
    raw_server: Callable[[Any], Any],
) -> None:
    fake = FakeServer()
    server = raw_server(fake)
    plan = build_plan(_script().recording())
    result = await replay_plans([plan], server.url + "/mcp", ReplayOptions(timeout=0.5))

    statuses = {c.label: (c.status, c.detail) for c in result.sessions[0].calls}
    assert statuses["tools/call flaky"][0] == MATCH  # answered on the resumed stream
    assert statuses["tools/call hang"][0] == MATCH  # cancelled when recorded: not waited for
    assert statuses["tools/call broken"] == (ERROR, "HTTP 500: oops")
    assert statuses["tools/call silent"] == (MISSING, "no response within 0.5 s")

    posts = [m for method, _, m in fake.requests if method == "POST"]
    live_ids = [m["id"] for m in posts if "id" in m]
    assert len(set(map(repr, live_ids))) == len(live_ids)  # fresh, never reused
    recorded = {"flaky": 1, "hang": 2, "broken": 3, "silent": 4}
    assert all(fake.live_ids[name] != rid for name, rid in recorded.items())
    cancel, timeout = [m for m in posts if m.get("method") == "notifications/cancelled"]
    assert cancel["params"]["requestId"] == fake.live_ids["hang"]
    # The call that timed out was cancelled too, by its live id.
    assert timeout["params"] == {"requestId": fake.live_ids["silent"],
                                 "reason": "ssetap replay: no response within 0.5 s"}
    # Every request after initialize carries the live session id and negotiated version.
    later = [h for method, h, m in fake.requests if (m or {}).get("method") != "initialize"]
    assert all(h.get("mcp-session-id") == "live-session-1" for h in later)
    assert all(h.get("mcp-protocol-version") == "2025-11-25" for h in later)
    # The resumption asked for the live cursor.
    resumes = [h for method, h, _ in fake.requests if method == "GET" and "last-event-id" in h]
    assert [h["last-event-id"] for h in resumes] == ["ev-1"]
