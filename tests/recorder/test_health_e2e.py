"""End to end: every flag, produced by a real server on loopback, recorded through the recorder.

There are two real recordings (`ssetap record` subprocesses in regular-proxy mode on ephemeral
ports), each made once for the whole module:

- Clean. Official-SDK sessions over legacy HTTP+SSE, Streamable HTTP (SSE and JSON response
  modes) and stateless, with 0.2 s heartbeats. They must raise no warning or error, live or
  with `ssetap check`.
- Faults. Each scenario runs against one of three servers, all at once:
  - the official SDK's servers (hung tool, cancellation, progress, duplicate ids, bad
    bodies, a token in the URL, a legacy client skipping initialize);
  - a small purpose-built faulty server (stops heartbeating, closes at a "round" idle time
    of 1.0 s, releases a buffered burst, cuts a stream mid-event or before its response,
    invites a reconnect loop, issues event ids the client then ignores, answers an unknown
    id, forgets a session, wildcard CORS, accepts a foreign Origin);
  - a "remote" server, named remote through `remote_hosts` because only loopback is used here.

Each flag is then checked three ways: a `flags` row with source 'live', the console line the
recorder printed while recording, and the report of `ssetap check --json`. Intervals are short
(0.2 s heartbeats, a 1.5 s request timeout, a 1.0 s "round" idle value), so the module runs in
seconds.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from recorder.demo_client import run_script
from recorder.demo_server import ServerHandle, start_server
from tests.conftest import ROOT, RawServer, Recording, start_recording

pytestmark = pytest.mark.timeout(120)

REQUEST_TIMEOUT = "1.5s"
CLEAN_REQUEST_TIMEOUT = "15s"
# The thresholds both recordings and `ssetap check` use (remote_hosts is added per capture).
CHECK_CONFIG: dict[str, Any] = {
    "idle_timeouts": [1.0],  # a "round" value a test can wait for
    "idle_tolerance": 0.15,
    "burst_gap": 1.0,
    "resume_grace": 0.5,
    "session_recover_grace": 1.0,
}
INIT_PARAMS = {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "e2e", "version": "1"}}
ACCEPT_BOTH = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


def rpc(id_: Any, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


# --- The faulty server ------------------------------------------------------------------------


def _head(status: int, headers: list[tuple[str, str]], reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _sse_open(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(200, [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                             ("Transfer-Encoding", "chunked")]))
    await writer.drain()


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()


async def _finish(writer: asyncio.StreamWriter) -> None:
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _json(writer: asyncio.StreamWriter, status: int, obj: Any,
          headers: list[tuple[str, str]] = [], reason: str = "OK") -> None:  # noqa: B006
    body = orjson.dumps(obj) if obj is not None else b""
    writer.write(_head(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body))), *headers], reason) + body)


def _event(obj: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}data: {orjson.dumps(obj).decode()}\n\n".encode()


class FaultyServer:
    """One small HTTP/1.1 server whose paths each get one thing wrong."""

    def __init__(self) -> None:
        self.forget_count = 0
        self.resume_gets = 0
        self.server = RawServer(self.respond)

    @property
    def url(self) -> str:
        return self.server.url

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        route = path.split("?")[0]
        handler: Callable[..., Awaitable[None]] = getattr(
            self, "_" + route.strip("/").replace("-", "_"), self._missing)
        await handler(method, headers, body, writer)

    async def _missing(self, method: str, headers: dict[str, str], body: bytes,
                       writer: asyncio.StreamWriter) -> None:
        _json(writer, 404, None, reason="Not Found")

    async def _hb(self, method: str, headers: dict[str, str], body: bytes,
                  writer: asyncio.StreamWriter) -> None:
        """Heartbeats every 0.2 s, then none for 2.5 s on a stream that stays open."""
        await _sse_open(writer)
        for _ in range(5):
            await _send(writer, b": ping\n\n")
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)
        await _finish(writer)

    async def _idle(self, method: str, headers: dict[str, str], body: bytes,
                    writer: asyncio.StreamWriter) -> None:
        """Closed by the server after exactly 1.0 s of silence (an idle timer)."""
        await _sse_open(writer)
        await _send(writer, _event(note("notifications/message", level="info", data="hello")))
        await asyncio.sleep(1.0)
        await _finish(writer)

    async def _burst(self, method: str, headers: dict[str, str], body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        """Eight events held back for 1.5 s and written at once, as a buffering proxy does."""
        await _sse_open(writer)
        await _send(writer, b": open\n\n")
        await asyncio.sleep(1.5)
        await _send(writer, b"".join(
            _event(note("notifications/message", level="info", data=i)) for i in range(8)))
        await asyncio.sleep(0.1)
        await _finish(writer)

    async def _trunc(self, method: str, headers: dict[str, str], body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        """Half an event, then the connection drops."""
        await _sse_open(writer)
        await _send(writer, b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/me')
        await asyncio.sleep(0.1)
        writer.transport.abort()

    async def _drop(self, method: str, headers: dict[str, str], body: bytes,
                    writer: asyncio.StreamWriter) -> None:
        """A POST stream that dies before the response to its tools/call."""
        await _sse_open(writer)
        await _send(writer, _event(note("notifications/message", level="info", data="working")))
        await asyncio.sleep(0.3)
        writer.transport.abort()

    async def _storm(self, method: str, headers: dict[str, str], body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        """No standalone stream here (405); a looping client asks again and again."""
        _json(writer, 405, None, [("Allow", "POST")], reason="Method Not Allowed")

    async def _resume(self, method: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        """Issues event ids on a GET stream, then ends it; a second GET just gets a comment."""
        if method == "POST" and b'"id"' not in body:
            _json(writer, 202, None, reason="Accepted")
            return
        if method == "POST":
            _json(writer, 200, {"jsonrpc": "2.0", "id": 0, "result": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "serverInfo": {"name": "faulty", "version": "1"}}},
                [("Mcp-Session-Id", "resume-session-0123456789abcdef")])
            return
        self.resume_gets += 1
        await _sse_open(writer)
        if self.resume_gets == 1:
            for i in (1, 2):
                await _send(writer, _event(note("notifications/message", data=i), str(i)))
            await asyncio.sleep(0.1)
        else:
            await _send(writer, b": resumed?\n\n")
            await asyncio.sleep(0.2)
        await _finish(writer)

    async def _orphan(self, method: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        """Answers id 99, which nobody asked for, before the real answer."""
        request = orjson.loads(body)
        await _sse_open(writer)
        await _send(writer, _event({"jsonrpc": "2.0", "id": 99, "result": {"tools": []}}))
        await _send(writer, _event({"jsonrpc": "2.0", "id": request["id"],
                                    "result": {"tools": []}}))
        await _finish(writer)

    async def _forget(self, method: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        """Serves a session for three requests, then no longer knows it (another replica)."""
        request = orjson.loads(body)
        sid = [("Mcp-Session-Id", "forgotten-session-0123456789ab")]
        if request.get("method") == "initialize":
            _json(writer, 200, {"jsonrpc": "2.0", "id": request["id"], "result": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "serverInfo": {"name": "faulty", "version": "1"}}}, sid)
            return
        self.forget_count += 1
        if self.forget_count > 2:
            _json(writer, 404, {"jsonrpc": "2.0", "id": "server-error", "error": {
                "code": -32600, "message": "Session not found"}}, reason="Not Found")
        elif "id" not in request:
            _json(writer, 202, None, sid, reason="Accepted")
        else:
            _json(writer, 200, {"jsonrpc": "2.0", "id": request["id"],
                                "result": {"tools": []}}, sid)

    async def _cors(self, method: str, headers: dict[str, str], body: bytes,
                    writer: asyncio.StreamWriter) -> None:
        """Any Origin welcome, and CORS open to every web page."""
        request = orjson.loads(body)
        _json(writer, 200, {"jsonrpc": "2.0", "id": request["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "serverInfo": {"name": "faulty", "version": "1"}}},
            [("Access-Control-Allow-Origin", "*")])

    async def _mcp(self, method: str, headers: dict[str, str], body: bytes,
                   writer: asyncio.StreamWriter) -> None:
        """The "remote" server: answers anyone, no authentication."""
        request = orjson.loads(body)
        _json(writer, 200, {"jsonrpc": "2.0", "id": request["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "serverInfo": {"name": "open", "version": "1"}}})

    def stop(self) -> None:
        self.server.stop()


# --- Clients ----------------------------------------------------------------------------------


class RawMcp:
    """A hand-driven Streamable HTTP client (the SDK client would not misbehave on purpose)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url
        self.headers: dict[str, str] = dict(ACCEPT_BOTH)

    async def initialize(self, extra: dict[str, str] | None = None) -> httpx.Response:
        response = await self.client.post(self.url, json=rpc(0, "initialize", **INIT_PARAMS),
                                          headers={**self.headers, **(extra or {})})
        if "mcp-session-id" in response.headers:
            self.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
            self.headers["MCP-Protocol-Version"] = "2025-06-18"
            await self.client.post(self.url, json=note("notifications/initialized"),
                                   headers=self.headers)
        return response

    async def post(self, body: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.client.post(self.url, content=content, headers=self.headers)

    async def stream(self, body: Any, *, timeout: float | None = None) -> str:
        """POST and read the answer until the server closes it (or the timeout)."""
        text: list[str] = []

        async def read() -> None:
            async with self.client.stream("POST", self.url, json=body,
                                          headers=self.headers) as response:
                async for piece in response.aiter_text():
                    text.append(piece)

        try:
            await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            pass
        return "".join(text)


async def _read_all(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> None:
    try:
        async with client.stream(method, url, **kwargs) as response:
            async for _ in response.aiter_bytes():
                pass
    except httpx.HTTPError:
        pass  # the faulty server may drop the connection: that is the point


async def _endpoint(lines: AsyncIterator[str]) -> str:
    async for line in lines:
        if line.startswith("data: /messages/"):
            return line[len("data: "):]
    raise AssertionError("no endpoint event")


async def _until(lines: AsyncIterator[str], text: str) -> None:
    async for line in lines:
        if text in line:
            return


# --- Scenarios --------------------------------------------------------------------------------


@dataclass
class Servers:
    faulty: FaultyServer
    remote: FaultyServer
    sdk: ServerHandle
    legacy: ServerHandle


async def sdk_scenarios(client: httpx.AsyncClient, servers: Servers) -> None:
    url = servers.sdk.mcp_url

    async def hung() -> None:  # pending past the deadline; the client gives up without cancel
        mcp = RawMcp(client, url)
        await mcp.initialize()
        await mcp.stream(rpc(1, "tools/call", name="hang", arguments={}), timeout=2.5)

    async def cancelled() -> None:  # the client times out first and cancels; the SDK answers
        mcp = RawMcp(client, url)
        await mcp.initialize()
        call = asyncio.create_task(mcp.stream(rpc(2, "tools/call", name="hang", arguments={}),
                                              timeout=4.0))
        await asyncio.sleep(1.0)
        await mcp.post(note("notifications/cancelled", requestId=2, reason="Request timed out"))
        await call

    async def slow() -> None:  # progress every 0.25 s for 2 s: slow, not hung
        mcp = RawMcp(client, url)
        await mcp.initialize()
        await mcp.stream(rpc(3, "tools/call", name="countdown", arguments={"n": 8, "delay": 0.25},
                             _meta={"progressToken": "p3"}), timeout=5.0)

    async def duplicate() -> None:  # id 7 reused while the first id 7 is still running
        mcp = RawMcp(client, url)
        await mcp.initialize()
        first = asyncio.create_task(mcp.stream(
            rpc(7, "tools/call", name="slow", arguments={"seconds": 1.0}), timeout=3.0))
        await asyncio.sleep(0.2)
        await mcp.stream(rpc(7, "tools/call", name="echo", arguments={"text": "x"}), timeout=3.0)
        await first

    async def bad_body_and_error() -> None:  # a body that is not JSON; a JSON-RPC error
        mcp = RawMcp(client, url)
        await mcp.initialize()
        response = await mcp.post(b'{"jsonrpc": "2.0", "id": 4, "method": "tools/li')
        assert response.status_code == 400
        await mcp.stream(rpc(5, "resources/read", uri="demo://missing"), timeout=3.0)

    async def token_in_url() -> None:
        mcp = RawMcp(client, url + "?access_token=sk-e2e-token-0123456789")
        await mcp.initialize()

    async def foreign_origin_refused() -> None:  # the SDK's DNS-rebinding protection: 403
        mcp = RawMcp(client, url)
        response = await mcp.initialize({"Origin": "http://evil.example"})
        assert response.status_code == 403

    await asyncio.gather(hung(), cancelled(), slow(), duplicate(), bad_body_and_error(),
                         token_in_url(), foreign_origin_refused())


async def legacy_skips_initialize(client: httpx.AsyncClient, servers: Servers) -> None:
    base = servers.legacy.url
    accept = {"Accept": "text/event-stream"}
    async with client.stream("GET", base + "/sse", headers=accept) as first:
        lines = first.aiter_lines()
        endpoint = await _endpoint(lines)
        await client.post(base + endpoint, json=rpc(0, "initialize", **INIT_PARAMS))
        await _until(lines, '"id":0')
        await client.post(base + endpoint, json=note("notifications/initialized"))
    # The stream dropped; the client reconnects, gets a new endpoint, and carries on as if
    # nothing happened (the EventSource auto-reconnect bug).
    async with client.stream("GET", base + "/sse", headers=accept) as second:
        lines = second.aiter_lines()
        endpoint = await _endpoint(lines)
        await client.post(base + endpoint, json=rpc(1, "tools/list"))
        await asyncio.sleep(0.3)


async def faulty_scenarios(client: httpx.AsyncClient, servers: Servers) -> None:
    url = servers.faulty.url
    sse = {"Accept": "text/event-stream"}

    async def storm() -> None:
        for _ in range(12):
            await client.get(url + "/storm", headers=sse)
            await asyncio.sleep(0.05)

    async def resume() -> None:
        mcp = RawMcp(client, url + "/resume")
        await mcp.initialize()
        await _read_all(client, "GET", url + "/resume", headers={**mcp.headers, **sse})
        # Reconnect without Last-Event-ID, though ids 1 and 2 were issued.
        await _read_all(client, "GET", url + "/resume", headers={**mcp.headers, **sse})

    async def forget() -> None:
        mcp = RawMcp(client, url + "/forget")
        await mcp.initialize()
        assert (await mcp.post(rpc(1, "tools/list"))).status_code == 200
        assert (await mcp.post(rpc(2, "tools/list"))).status_code == 404

    async def cors() -> None:
        mcp = RawMcp(client, url + "/cors")
        await mcp.initialize({"Origin": "http://evil.example"})

    async def remote() -> None:
        await RawMcp(client, servers.remote.url + "/mcp").initialize()

    await asyncio.gather(
        _read_all(client, "GET", url + "/hb", headers=sse),
        _read_all(client, "GET", url + "/idle", headers=sse),
        _read_all(client, "GET", url + "/burst", headers=sse),
        _read_all(client, "GET", url + "/trunc", headers=sse),
        _read_all(client, "POST", url + "/drop", headers=ACCEPT_BOTH,
                  json=rpc(1, "tools/call", name="work", arguments={})),
        # Sessionless traffic from one client is one session: ids must not collide with /drop.
        _read_all(client, "POST", url + "/orphan", headers=ACCEPT_BOTH, json=rpc(5, "tools/list")),
        storm(), resume(), forget(), cors(), remote(),
    )


async def run_faults(proxy: str, servers: Servers) -> None:
    async with httpx.AsyncClient(proxy=proxy, timeout=10, trust_env=False) as client:
        await asyncio.gather(sdk_scenarios(client, servers), faulty_scenarios(client, servers),
                             legacy_skips_initialize(client, servers))
    await asyncio.sleep(0.5)  # let the last ticks see the last deadlines


# --- Recordings -------------------------------------------------------------------------------


@dataclass
class Captured:
    rec: Recording
    db: Path
    config: Path
    servers: dict[int, str]  # port -> name
    check: dict[str, Any] = field(default_factory=dict)
    check_code: int = -1
    junit: Path | None = None


def _write_config(path: Path, **extra: Any) -> Path:
    path.write_bytes(orjson.dumps({**CHECK_CONFIG, **extra}))
    return path


def _run_check(db: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "recorder.cli", "check", str(db), "--config",
                           str(config), *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60, check=False)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    tmp = tmp_path_factory.mktemp("faults")
    faulty, remote = FaultyServer(), FaultyServer()
    sdk = start_server("streamable-http", ping_interval=0.2)
    legacy = start_server("sse", ping_interval=0.2)
    rec: Recording | None = None
    try:
        remote_host = f"127.0.0.1:{remote.server.port}"
        config = _write_config(tmp / "checks.json", remote_hosts=[remote_host])
        rec = start_recording(tmp / "faults.db", None, "--mode", "regular", "--request-timeout",
                              REQUEST_TIMEOUT, "--check-config", str(config))
        servers = Servers(faulty, remote, sdk, legacy)
        asyncio.run(run_faults(rec.url, servers))
        assert rec.stop() == 0, rec.output
        captured = Captured(rec, rec.db, config, {
            faulty.server.port: "faulty", remote.server.port: "remote", sdk.port: "sdk",
            legacy.port: "legacy"})
        captured.junit = tmp / "report.xml"
        done = _run_check(rec.db, config, "--json", "--junit", str(captured.junit))
        captured.check_code = done.returncode
        assert done.stdout, done.stderr
        captured.check = orjson.loads(done.stdout)
        yield captured
    finally:
        if rec is not None:
            rec.stop()
        for server in (faulty, remote):
            server.stop()
        sdk.stop()
        legacy.stop()


@asynccontextmanager
async def _proxied(proxy: str) -> AsyncIterator[None]:
    """The SDK's httpx clients honour HTTP_PROXY, as real users configure them."""
    saved = {k: os.environ.get(k) for k in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")}
    os.environ.update(HTTP_PROXY=proxy, http_proxy=proxy, NO_PROXY="", no_proxy="")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    tmp = tmp_path_factory.mktemp("clean")
    handles = [
        start_server("sse", ping_interval=0.2),
        start_server("streamable-http", ping_interval=0.2),
        start_server("streamable-http", ping_interval=0.2, json_response=True),
        start_server("streamable-http", ping_interval=0.2, stateless=True),
    ]
    rec: Recording | None = None
    try:
        config = _write_config(tmp / "checks.json")
        # Not the faults' short request timeout: nothing here is meant to time out, and under
        # a loaded CI machine an SDK server once took 1.6 s to answer `initialize`.
        rec = start_recording(tmp / "clean.db", None, "--mode", "regular", "--request-timeout",
                              CLEAN_REQUEST_TIMEOUT, "--check-config", str(config))

        async def sessions() -> list[dict[str, Any]]:
            assert rec is not None
            async with _proxied(rec.url):
                return await asyncio.gather(*(run_script(h.mcp_url, h.transport,
                                                         log=lambda _: None) for h in handles))

        summaries = asyncio.run(sessions())
        assert all(not s["errors"] for s in summaries), [s["errors"] for s in summaries]
        assert rec.stop() == 0, rec.output
        captured = Captured(rec, rec.db, config, {h.port: h.transport for h in handles})
        done = _run_check(rec.db, config, "--json", "--fail-on", "warning")
        captured.check_code = done.returncode
        captured.check = orjson.loads(done.stdout)
        yield captured
    finally:
        if rec is not None:
            rec.stop()
        for handle in handles:
            handle.stop()


# --- Reading the results ----------------------------------------------------------------------


def _db_rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def _subject_url(db: Path, exchange: int | None, stream: int | None, message: int | None,
                 call: int | None, session: int | None) -> str:
    """The URL of the HTTP exchange a flag is about (its own, its stream's, its message's)."""
    if exchange is None and stream is not None:
        exchange = _db_rows(db, "SELECT exchange_id FROM streams WHERE id=?", stream)[0][
            "exchange_id"]
    if exchange is None and call is not None:
        message = _db_rows(db, "SELECT request_message_id FROM calls WHERE id=?", call)[0][
            "request_message_id"]
    if exchange is None and message is not None:
        exchange = _db_rows(db, "SELECT exchange_id FROM messages WHERE id=?", message)[0][
            "exchange_id"]
    if exchange is None and session is not None:
        exchange = _db_rows(db, "SELECT min(id) AS id FROM exchanges WHERE session_id=?",
                            session)[0]["id"]
    return str(_db_rows(db, "SELECT url FROM exchanges WHERE id=?", exchange)[0]["url"])


@dataclass(frozen=True)
class Found:
    kind: str
    severity: str
    server: str
    path: str
    message: str
    details: dict[str, Any]
    t: float


def _found(captured: Captured, kind: str, severity: str, t: float, message: str,
           details: dict[str, Any], ids: tuple[Any, ...]) -> Found:
    url = urlsplit(_subject_url(captured.db, *ids))
    return Found(kind, severity, captured.servers.get(url.port or 0, "?"), url.path, message,
                 details, t)


def live_flags(captured: Captured) -> list[Found]:
    rows = _db_rows(captured.db, "SELECT * FROM flags WHERE source='live' ORDER BY id")
    return [_found(captured, r["kind"], r["severity"], r["t"], r["message"],
                   orjson.loads(r["details"]) if r["details"] else {},
                   (r["exchange_id"], r["stream_id"], r["message_id"], r["call_id"],
                    r["session_id"])) for r in rows]


def check_flags(captured: Captured) -> list[Found]:
    return [_found(captured, f["kind"], f["severity"], f["t"], f["message"], f["details"],
                   (f["exchange"], f["stream"], f["message_id"], f["call"], f["session"]))
            for group in captured.check["sessions"] for f in group["flags"]]


# (kind, severity, server, path, what the message or details must show)
EXPECTED = [
    ("heartbeat-missing", "warning", "faulty", "/hb", "heartbeat cadence is"),
    ("idle-timeout-close", "warning", "faulty", "/idle", "a configured 1.00 s timeout"),
    ("buffered-stream", "warning", "faulty", "/burst", "8 SSE events arrived together"),
    ("stream-truncated", "warning", "faulty", "/trunc", "ended mid-event"),
    ("stream-truncated", "warning", "faulty", "/drop", "before the response to tools/call work"),
    ("reconnect-storm", "error", "faulty", "/storm", "with no backoff"),
    ("resume-gap", "error", "faulty", "/resume", "without Last-Event-ID"),
    ("request-timeout", "error", "sdk", "/mcp", "state=pending"),
    ("request-cancelled", "info", "sdk", "/mcp", "with reason 'Request timed out'"),
    ("request-timeout", "warning", "sdk", "/mcp", "state=slow"),
    ("request-timeout", "error", "faulty", "/drop", "state=stream-closed"),
    ("late-response", "warning", "sdk", "/mcp", "arrived"),
    ("orphan-response", "warning", "faulty", "/orphan", "id 99 matches no request"),
    ("duplicate-id", "error", "sdk", "/mcp", "still in flight"),
    ("error-response", "info", "sdk", "/mcp", "'Unknown resource: demo://missing'"),
    ("session-not-found", "error", "faulty", "/forget", "which had 2 successful answers"),
    ("reinit-missing", "error", "legacy", "/messages/", "received tools/list"),
    ("invalid-message", "warning", "sdk", "/mcp", "invalid JSON"),
    ("plaintext-remote", "warning", "remote", "/mcp", "plain HTTP"),
    ("token-in-url", "error", "sdk", "/mcp", "(access_token)"),
    ("wildcard-cors", "warning", "faulty", "/cors", "Access-Control-Allow-Origin: '*'"),
    ("origin-accepted", "warning", "faulty", "/cors", "foreign Origin 'http://evil.example'"),
    ("missing-auth", "info", "remote", "/mcp", "without any Authorization header"),
]


def _matches(found: Found, kind: str, severity: str, server: str, path: str,
             shows: str) -> bool:
    if (found.kind, found.severity, found.server, found.path) != (kind, severity, server, path):
        return False
    if shows.startswith("state="):
        return found.details.get("state") == shows[len("state="):]
    return shows in found.message


@pytest.mark.parametrize(("kind", "severity", "server", "path", "shows"), EXPECTED,
                         ids=[f"{e[0]}-{e[4][:24]}" for e in EXPECTED])
def test_fault_is_flagged_live_and_by_check(faults: Captured, kind: str, severity: str,
                                            server: str, path: str, shows: str) -> None:
    live = [f for f in live_flags(faults) if _matches(f, kind, severity, server, path, shows)]
    assert len(live) == 1, [f for f in live_flags(faults) if f.kind == kind]
    # The console line the recorder printed while recording.
    line = f"ssetap: [{severity}] {kind}: {live[0].message}"
    assert line in faults.rec.lines
    checked = [f for f in check_flags(faults) if _matches(f, kind, severity, server, path, shows)]
    assert len(checked) == 1, [f for f in check_flags(faults) if f.kind == kind]


def test_every_flag_kind_has_a_real_scenario() -> None:
    from recorder.health import FLAG_KINDS
    from tests.recorder.test_health_scenarios_e2e import SCENARIO_KINDS
    from tests.recorder.test_pressure_e2e import SCENARIO_KINDS as RECORDER_KINDS

    assert {e[0] for e in EXPECTED} | SCENARIO_KINDS | RECORDER_KINDS == set(FLAG_KINDS)


def test_silent_stream_was_flagged_while_it_was_still_open(faults: Captured) -> None:
    (flag,) = [f for f in live_flags(faults) if f.kind == "heartbeat-missing"]
    (stream,) = _db_rows(faults.db, "SELECT s.opened_at, s.closed_at FROM streams s JOIN "
                         "exchanges e ON e.id = s.exchange_id WHERE e.path = '/hb'")
    # The heartbeats stopped 1 s after opening and the stream closed 2.5 s later.
    assert stream["opened_at"] + 1.5 < flag.t < stream["closed_at"] - 0.5


def test_no_false_alarms_in_the_fault_capture(faults: Captured) -> None:
    found = live_flags(faults)
    # The SDK server heartbeats and refuses foreign origins; the legacy session was fine
    # until its client skipped initialize.
    assert not [f for f in found if f.server == "sdk" and f.kind in (
        "heartbeat-missing", "origin-accepted", "wildcard-cors", "reconnect-storm",
        "stream-truncated", "idle-timeout-close")]
    # (The SDK answers the early tools/list with a JSON-RPC error: information.)
    assert {f.kind for f in found if f.server == "legacy"} == {"reinit-missing", "error-response"}
    assert not [f for f in found if f.server == "remote"
                and f.kind not in ("plaintext-remote", "missing-auth")]


def test_check_reports_and_stores_alongside_the_live_flags(faults: Captured) -> None:
    report = faults.check
    assert faults.check_code == 1  # errors at or above the default --fail-on error
    assert report["failed"] is True and report["stored"] is True
    assert report["config"]["request_timeout"] == 1.5  # the recording's own threshold
    # Worst session first.
    worst = [max(("info", "warning", "error").index(f["severity"]) for f in g["flags"])
             for g in report["sessions"]]
    assert worst == sorted(worst, reverse=True)
    # Every check finding is either a live flag or stored as a check flag: never both.
    live = _db_rows(faults.db, "SELECT count(*) AS n FROM flags WHERE source='live'")[0]["n"]
    stored = _db_rows(faults.db, "SELECT count(*) AS n FROM flags WHERE source='check'")[0]["n"]
    total = sum(len(g["flags"]) for g in report["sessions"])
    seen_live = sum(f["seen_live"] for g in report["sessions"] for f in g["flags"])
    assert stored == total - seen_live
    assert seen_live <= live
    # JUnit for CI dashboards: one case per session, failing where errors are.
    assert faults.junit is not None
    suite = ET.parse(faults.junit).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("failures", "0")) >= 5
    unbound = sum(1 for g in report["sessions"] if g["session"] is None)
    assert int(suite.get("tests", "0")) == report["sessions_checked"] + unbound


def test_check_exit_codes_and_bad_input(faults: Captured, tmp_path: Path) -> None:
    done = _run_check(faults.db, faults.config, "--fail-on", "error", "--no-store")
    assert done.returncode == 1
    assert "ssetap check" in done.stdout and "Session" in done.stdout
    assert done.stdout.index("error ") < done.stdout.rindex("info ")
    bad = tmp_path / "not-a-capture.db"
    bad.write_text("hello")
    done = _run_check(bad, faults.config)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    wrong = _write_config(tmp_path / "wrong.json", heartbeat="soon")
    done = _run_check(faults.db, wrong)
    assert done.returncode == 2 and "unknown check option 'heartbeat'" in done.stderr


def test_clean_sdk_sessions_raise_no_warning_or_error(clean: Captured) -> None:
    sessions = _db_rows(clean.db, "SELECT transport, server FROM sessions")
    assert len(sessions) >= 4
    found = live_flags(clean)
    assert [f for f in found if f.severity != "info"] == []
    assert {f.kind for f in found} <= {"error-response"}
    assert not [line for line in clean.rec.lines if "[warning]" in line or "[error]" in line]
    assert clean.check_code == 0, clean.check
    assert clean.check["counts"]["warning"] == clean.check["counts"]["error"] == 0
    # The JSON-RPC errors the demo script provokes are reported, as information.
    assert clean.check["counts"]["info"] >= 2
