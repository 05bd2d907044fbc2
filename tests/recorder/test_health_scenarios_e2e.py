"""End to end, one recording each: the measured problems of issue 14 as acceptance tests.

Each test runs a real `ssetap record` (reverse proxy on an ephemeral loopback port) in front
of a real server, drives a real client through it, then runs `ssetap check --json` on the
capture. The servers: the official Python SDK's demo server, an mcp>=2 peer
(peers/cancel_peer.py, from $SSETAP_MCP2_PYTHON), the TypeScript SDK's server-everything with
a TypeScript SDK client (peers/abort_client.cjs), and small raw-socket servers for what no SDK
does on purpose (broadcast to every stream, 429, a long clean stream, sloppy protocol).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ROOT, RawServer
from tests.recorder.capture_query import q

pytestmark = pytest.mark.timeout(120)

PEERS = Path(__file__).parent / "peers"
MCP2_DEFAULT = Path.home() / ".cache" / "ssetap" / "mcp2-venv" / "bin" / "python"
MCP2_PYTHON = os.environ.get("SSETAP_MCP2_PYTHON") or (
    str(MCP2_DEFAULT) if MCP2_DEFAULT.exists() else "")
NPM = Path.home() / ".cache" / "ssetap" / "npm" / "node_modules" / "@modelcontextprotocol"
EVERYTHING = Path(os.environ.get("SSETAP_SERVER_EVERYTHING",
                                 NPM / "server-everything" / "dist" / "index.js"))
TS_SDK = NPM / "sdk"
NODE = shutil.which("node")

# The kinds these scenarios produce (with tests/recorder/test_health_e2e.py's EXPECTED, every
# kind of the registry has a real scenario).
SCENARIO_KINDS = {"reconnect-storm", "request-cancelled", "cross-session-delivery",
                  "rate-limited", "spec-violation"}

INIT_PARAMS = {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "e2e", "version": "1"}}
ACCEPT_BOTH = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


def check(db: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """`ssetap check --json` on a capture: exit code and every flag it reports."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "recorder.cli", "check", str(db), "--json",
                           "--no-store", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60, check=False)
    assert done.stdout, done.stderr
    report = orjson.loads(done.stdout)
    return done.returncode, [f for g in report["sessions"] for f in g["flags"]]


def live(db: Path, kind: str) -> list[tuple[Any, ...]]:
    return q(db, "SELECT severity, message, details FROM flags WHERE source='live' AND kind=?",
             kind)


def of(flags: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in flags if f["kind"] == kind]


def serious(flags: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["kind"], f["message"]) for f in flags if f["severity"] != "info"]


def _head(status: int, headers: list[tuple[str, str]], reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEAD = _head(200, [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                       ("Transfer-Encoding", "chunked")])


def _json(status: int, obj: Any, headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
          reason: str = "OK") -> bytes:
    body = orjson.dumps(obj) if obj is not None else b""
    return _head(status, [("Content-Type", "application/json"),
                          ("Content-Length", str(len(body))), *headers], reason) + body


# --- Storms across sessions ---------------------------------------------------------------------


def test_legacy_client_reconnecting_30_times_in_3_s_is_a_storm(record, mcp_server) -> None:
    server = mcp_server("sse")
    rec = record(server.url)

    async def reconnect_loop() -> None:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            for _ in range(30):
                async with client.stream("GET", rec.url + "/sse",
                                         headers={"Accept": "text/event-stream"}) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: /messages/"):
                            break  # got a new endpoint (a new session); drop it, go again
                await asyncio.sleep(0.05)

    asyncio.run(reconnect_loop())
    time.sleep(0.5)
    assert rec.stop() == 0, rec.output
    assert q(rec.db, "SELECT count(*) FROM sessions WHERE transport='sse'") == [(30,)]
    code, flags = check(rec.db)
    (storm,) = of(flags, "reconnect-storm")
    assert storm["severity"] == "error" and "GET /sse" in storm["message"]
    assert len(storm["details"]["sessions"]) >= 5
    assert "across sessions #" in storm["message"]
    assert code == 1
    assert len(live(rec.db, "reconnect-storm")) == 1


def test_streamable_client_re_initializing_in_a_loop_is_a_storm(record, mcp_server) -> None:
    server = mcp_server("streamable-http")
    rec = record(server.url)

    async def init_loop() -> list[str]:
        sids = []
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            for _ in range(12):  # initialize, give up on the session, initialize again
                response = await client.post(rec.url + "/mcp", headers=ACCEPT_BOTH, json={
                    "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS})
                sids.append(response.headers["mcp-session-id"])
                await asyncio.sleep(0.1)
        return sids

    sids = asyncio.run(init_loop())
    assert len(set(sids)) == 12
    time.sleep(0.3)
    assert rec.stop() == 0, rec.output
    code, flags = check(rec.db)
    (storm,) = of(flags, "reconnect-storm")
    assert "initialized 11 new sessions" in storm["message"]
    sessions = [r[0] for r in q(rec.db, "SELECT id FROM sessions ORDER BY id")]
    assert storm["details"]["sessions"] == sessions[:11]
    assert code == 1


# --- Rate limits --------------------------------------------------------------------------------


def test_429_with_retry_after_and_a_client_that_retries_too_soon(record) -> None:
    seen: dict[str, int] = {}

    async def limited(method: str, path: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        agent = headers.get("user-agent", "")
        seen[agent] = seen.get(agent, 0) + 1
        request = orjson.loads(body)
        if seen[agent] == 1 or agent == "impatient/1":
            writer.write(_json(429, {"error": "slow down"}, [("Retry-After", "1")],
                               "Too Many Requests"))
        else:
            writer.write(_json(200, {"jsonrpc": "2.0", "id": request["id"], "result": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "serverInfo": {"name": "limited", "version": "1"}}}))
        await writer.drain()

    server = RawServer(limited)
    try:
        rec = record(server.url)

        async def clients() -> None:
            body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS}
            async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
                polite = {**ACCEPT_BOTH, "User-Agent": "polite/1"}
                first = await client.post(rec.url + "/mcp", headers=polite, json=body)
                assert first.status_code == 429
                await asyncio.sleep(1.2)  # waits as asked
                assert (await client.post(rec.url + "/mcp", headers=polite,
                                          json=body)).status_code == 200
                impatient = {**ACCEPT_BOTH, "User-Agent": "impatient/1"}
                for _ in range(4):
                    await client.post(rec.url + "/mcp", headers=impatient, json=body)
                    await asyncio.sleep(0.1)

        asyncio.run(clients())
        time.sleep(0.3)
        assert rec.stop() == 0, rec.output
    finally:
        server.stop()
    code, flags = check(rec.db)
    limited_flags = of(flags, "rate-limited")
    assert len(limited_flags) == 2  # once per client and endpoint
    assert all(f["severity"] == "warning" and f["details"]["retry_after"] == 1.0
               for f in limited_flags)
    assert all("429 Too Many Requests with Retry-After: 1" in f["message"]
               for f in limited_flags)
    (storm,) = of(flags, "reconnect-storm")
    assert "impatient/1" in storm["message"] and "before the Retry-After" in storm["message"]
    assert code == 1


# --- Cancellations ------------------------------------------------------------------------------


def _short_grace(tmp_path: Path) -> tuple[str, str]:
    """Record with a 0.5 s cancel_grace, so the live flag has seconds of margin."""
    config = tmp_path / "grace.json"
    config.write_bytes(orjson.dumps({"cancel_grace": "0.5s"}))
    return ("--check-config", str(config))


@pytest.mark.skipif(not MCP2_PYTHON, reason="no interpreter with mcp>=2 (SSETAP_MCP2_PYTHON)")
def test_python_sdk_client_timeout_is_a_cancel_not_a_timeout(record, tmp_path: Path) -> None:
    proc = subprocess.Popen([MCP2_PYTHON, str(PEERS / "cancel_peer.py"), "server"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        rec = record(f"http://127.0.0.1:{line.split()[1]}", *_short_grace(tmp_path))
        out = subprocess.run([MCP2_PYTHON, str(PEERS / "cancel_peer.py"), "client",
                              rec.url + "/mcp"], capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("OK "), out.stderr[-2000:]
        time.sleep(2.5)  # the live check waits cancel_grace (0.5 s here) for an answer
        assert rec.stop() == 0, rec.output
    finally:
        proc.kill()
        proc.wait()
    code, flags = check(rec.db)
    assert of(flags, "request-timeout") == []
    (cancelled,) = of(flags, "request-cancelled")
    # mcp 2 speaks 2026-07-28: the client cancels by closing the response stream.
    assert cancelled["severity"] == "info" and cancelled["details"]["reason"]
    assert "tools/call hang" in cancelled["message"]
    assert 0.4 < cancelled["details"]["waited"] < 5.0
    assert code == 0  # information does not fail the default gate
    assert len(live(rec.db, "request-cancelled")) == 1


@pytest.mark.skipif(not MCP2_PYTHON, reason="no interpreter with mcp>=2 (SSETAP_MCP2_PYTHON)")
def test_python_sdk_timeout_sends_a_cancel_before_the_deadline(record, mcp_server,
                                                               tmp_path: Path) -> None:
    """Issue 14's measured case: a 0.5 s client timeout was `[error] request-timeout ...
    cancelled by the client after 511 ms`. mcp 2's client against the demo server (mcp 1.x,
    2025-11-25) sends notifications/cancelled "Request timed out" after 0.5 s."""
    server = mcp_server("streamable-http")
    rec = record(server.url, *_short_grace(tmp_path))
    out = subprocess.run([MCP2_PYTHON, str(PEERS / "cancel_peer.py"), "client",
                          rec.url + "/mcp", "{}"], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("OK "), out.stderr[-2000:]
    time.sleep(2.5)
    assert rec.stop() == 0, rec.output
    code, flags = check(rec.db)
    assert of(flags, "request-timeout") == []
    (cancelled,) = of(flags, "request-cancelled")
    assert cancelled["severity"] == "info"
    assert cancelled["details"]["reason"] and 0.4 < cancelled["details"]["waited"] < 5.0
    assert "tools/call hang" in cancelled["message"]
    # The v1 server still answers the cancelled call ("Request cancelled"): a real deviation
    # (receivers should not answer a cancelled request), a warning, not an error.
    assert [f["severity"] for f in of(flags, "late-response")] in ([], ["warning"])
    assert cancelled["details"]["answered"] is bool(of(flags, "late-response"))
    assert code == 0
    assert len(live(rec.db, "request-cancelled")) == 1


@pytest.mark.skipif(not (NODE and EVERYTHING.exists() and TS_SDK.exists()),
                    reason="node, server-everything or the TypeScript SDK missing (.ci/run)")
def test_typescript_abort_controller_cancel_is_the_same_kind(record, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(NODE), "--require", str(PEERS / "loopback.cjs"),
                             str(EVERYTHING), "streamableHttp"], env=dict(os.environ, PORT="0"),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        port = next(line.split()[1] for line in proc.stderr if line.startswith("SSETAP_PORT "))
        rec = record(f"http://127.0.0.1:{port}", *_short_grace(tmp_path))
        out = subprocess.run([str(NODE), str(PEERS / "abort_client.cjs"), str(TS_SDK),
                              rec.url + "/mcp"], capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("OK "), out.stderr[-2000:]
        time.sleep(2.5)  # the live check waits cancel_grace (0.5 s here) for an answer
        assert rec.stop() == 0, rec.output
    finally:
        proc.kill()
        proc.wait()
    code, flags = check(rec.db)
    assert of(flags, "request-timeout") == []
    (cancelled,) = of(flags, "request-cancelled")
    assert len(live(rec.db, "request-cancelled")) == 1
    assert cancelled["severity"] == "info"
    assert "user pressed stop" in cancelled["details"]["reason"]
    assert "trigger-long-running-operation" in cancelled["message"]
    assert code == 0


# --- A long stream that ended cleanly -----------------------------------------------------------


def test_a_clean_stream_at_a_round_duration_is_not_a_cut(record, tmp_path: Path) -> None:
    """Issue 14's 30,000 events closed normally at 15 s, shortened: 3 s is the round value."""

    async def streams(method: str, path: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        loop = asyncio.get_running_loop()
        start = loop.time()
        i = 0
        while loop.time() - start < 3.0:
            events = b"".join(
                b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
                b'"params":{"level":"info","data":%d}}\n\n' % (i + k) for k in range(10))
            writer.write(_chunk(events))
            await writer.drain()
            i += 10
            await asyncio.sleep(0.01)
        if path.startswith("/cut"):  # the same stream, cut mid-event by a 3 s deadline
            writer.write(_chunk(b'event: message\ndata: {"jsonrpc":"2.0","meth'))
            await writer.drain()
            writer.transport.abort()
            return
        writer.write(b"0\r\n\r\n")  # a clean end: the server had said all it had to say
        await writer.drain()

    server = RawServer(streams)
    config = tmp_path / "checks.json"
    config.write_bytes(orjson.dumps({"idle_timeouts": [3.0], "idle_tolerance": 0.15}))
    try:
        rec = record(server.url, "--check-config", str(config))

        async def read(path: str) -> int:
            count = 0
            async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
                try:
                    async with client.stream("GET", rec.url + path,
                                             headers={"Accept": "text/event-stream"}) as r:
                        async for line in r.aiter_lines():
                            count += line.startswith("data: ")
                except httpx.HTTPError:
                    pass  # the cut stream
            return count

        async def both() -> list[int]:
            return list(await asyncio.gather(read("/clean"), read("/cut")))

        clean, _ = asyncio.run(both())
        assert clean > 1000
        time.sleep(0.3)
        assert rec.stop() == 0, rec.output
    finally:
        server.stop()
    code, flags = check(rec.db, "--config", str(config))
    cuts = of(flags, "idle-timeout-close")
    assert len(cuts) == 1, cuts  # only the stream cut mid-way
    (stream,) = q(rec.db, "SELECT s.id FROM streams s JOIN exchanges e ON e.id = s.exchange_id "
                          "WHERE e.path = '/cut'")
    assert cuts[0]["stream"] == stream[0]
    assert "s after it opened" in cuts[0]["message"] and "a configured 3.00 s" in cuts[0]["message"]


# --- Tenant isolation ---------------------------------------------------------------------------


class Broadcaster:
    """A legacy HTTP+SSE server that writes every message to every open /sse stream.

    That is how supergateway 4.0's legacy SSE mode behaves: each client sees every other
    client's answers and notifications.
    """

    def __init__(self) -> None:
        self.streams: list[asyncio.StreamWriter] = []
        self.count = 0
        self.server = RawServer(self.respond)

    async def respond(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path.startswith("/sse"):
            self.count += 1
            writer.write(SSE_HEAD + _chunk(
                b"event: endpoint\ndata: /messages/?session_id=%032x\n\n" % self.count))
            await writer.drain()
            self.streams.append(writer)
            for _ in range(200):  # until the client goes (or 20 s)
                await asyncio.sleep(0.1)
                if writer.is_closing():
                    break
                writer.write(_chunk(b": ping\n\n"))
            if writer in self.streams:
                self.streams.remove(writer)
            writer.transport.abort()
            return
        writer.write(_head(202, [("Content-Length", "8")], "Accepted") + b"Accepted")
        await writer.drain()
        message = orjson.loads(body)
        if "id" not in message or "method" not in message:
            return
        result: dict[str, Any] = {}
        if message["method"] == "initialize":
            result = {"protocolVersion": "2024-11-05", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "broadcaster", "version": "1"}}
        elif message["method"] == "tools/list":
            result = {"tools": []}
        answer = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
        for stream in list(self.streams):  # the bug: every stream, not the session's own
            if not stream.is_closing():
                stream.write(_chunk(b"event: message\ndata: " + answer + b"\n\n"))

    def stop(self) -> None:
        self.server.stop()


def test_a_broadcasting_legacy_server_is_cross_session_delivery(record) -> None:
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    broadcaster = Broadcaster()
    try:
        rec = record(broadcaster.server.url)
        opened = asyncio.Event()

        async def client(first: bool) -> int:
            async with sse_client(rec.url + "/sse") as (read, write):
                async with ClientSession(read, write) as session:
                    if first:
                        opened.set()
                        await asyncio.sleep(0.3)  # both streams open before anyone talks
                    else:
                        await opened.wait()
                    await session.initialize()
                    await asyncio.sleep(0.2)
                    tools = await session.list_tools()
                    await asyncio.sleep(0.5)
                    return len(tools.tools)

        async def both() -> list[int]:
            return list(await asyncio.wait_for(asyncio.gather(client(True), client(False)), 30))

        assert asyncio.run(both()) == [0, 0]
        time.sleep(0.3)
        assert rec.stop() == 0, rec.output
    finally:
        broadcaster.stop()
    sessions = [r[0] for r in q(rec.db, "SELECT id FROM sessions ORDER BY id")]
    assert len(sessions) == 2
    code, flags = check(rec.db)
    (cross,) = of(flags, "cross-session-delivery")
    assert cross["severity"] == "error" and cross["details"]["sessions"] == sessions
    assert f"session #{sessions[0]}" in cross["message"]
    assert f"session #{sessions[1]}" in cross["message"]
    assert of(flags, "orphan-response") == []
    assert code == 1
    assert len(live(rec.db, "cross-session-delivery")) == 1


# --- Protocol lint ------------------------------------------------------------------------------


async def _sloppy(method: str, path: str, headers: dict[str, str], body: bytes,
                  writer: asyncio.StreamWriter) -> None:
    """A Streamable HTTP server on raw sockets that breaks a few rules, each exactly once."""
    sid = [("Mcp-Session-Id", "sloppy-session-0123456789abcdef")]
    request = orjson.loads(body)
    name = request.get("method")
    if "id" not in request:  # a notification: must be 202 with no body; this says "ok"
        writer.write(_head(200, [("Content-Type", "text/plain"), ("Content-Length", "2"), *sid])
                     + b"ok")
    elif name == "initialize":
        writer.write(_json(200, {"jsonrpc": "2.0", "id": request["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}, "resources": {},
                                                              "prompts": {}},
            "serverInfo": {"name": "sloppy", "version": "1"}}}, sid))
    elif name == "tools/list":  # jsonrpc-version
        writer.write(_json(200, {"jsonrpc": "1.0", "id": request["id"],
                                 "result": {"tools": []}}, sid))
    elif name == "tools/call":  # schema: content must be a list
        writer.write(_json(200, {"jsonrpc": "2.0", "id": request["id"],
                                 "result": {"content": "just text"}}, sid))
    elif name == "resources/list":  # result-xor-error
        writer.write(_json(200, {"jsonrpc": "2.0", "id": request["id"],
                                 "result": {"resources": []},
                                 "error": {"code": -32603, "message": "and an error"}}, sid))
    elif name == "resources/read":  # error-shape: a string code, a numeric message
        writer.write(_json(200, {"jsonrpc": "2.0", "id": request["id"],
                                 "error": {"code": "not found", "message": 404}}, sid))
    else:  # prompts/list: response-content-type
        text = orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"prompts": []}})
        writer.write(_head(200, [("Content-Type", "text/plain"),
                                 ("Content-Length", str(len(text))), *sid]) + text)
    await writer.drain()


SLOPPY_RULES = {"accepted-no-body", "jsonrpc-version", "schema", "result-xor-error",
                "error-shape", "response-content-type"}


def test_a_sloppy_server_breaks_each_lint_rule_once_and_sarif_lists_them(record,
                                                                          tmp_path: Path) -> None:
    server = RawServer(_sloppy)
    try:
        rec = record(server.url)

        async def client() -> None:  # a correct client: only the server is sloppy
            async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                url = rec.url + "/mcp"
                first = await http.post(url, headers=ACCEPT_BOTH, json={
                    "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS})
                headers = {**ACCEPT_BOTH, "Mcp-Session-Id": first.headers["mcp-session-id"],
                           "MCP-Protocol-Version": "2025-06-18"}
                await http.post(url, headers=headers, json={
                    "jsonrpc": "2.0", "method": "notifications/initialized"})
                calls = [("tools/list", {}), ("tools/call", {"name": "echo", "arguments": {}}),
                         ("resources/list", {}), ("resources/read", {"uri": "demo://x"}),
                         ("prompts/list", {})]
                for i, (name, params) in enumerate(calls, 1):
                    await http.post(url, headers=headers, json={
                        "jsonrpc": "2.0", "id": i, "method": name, "params": params})

        asyncio.run(client())
        time.sleep(0.3)
        assert rec.stop() == 0, rec.output
    finally:
        server.stop()
    sarif = tmp_path / "check.sarif"
    code, flags = check(rec.db, "--sarif", str(sarif))
    found = of(flags, "spec-violation")
    assert sorted(f["details"]["rule"] for f in found) == sorted(SLOPPY_RULES)
    assert all(f["message"].startswith(f"[{f['details']['rule']}] ") for f in found)
    # Nothing else but the JSON-RPC error's own information line.
    assert {f["kind"] for f in flags} - {"spec-violation"} <= {"error-response"}
    assert code == 0  # warnings do not fail the default gate
    assert {orjson.loads(r[2])["rule"] for r in live(rec.db, "spec-violation")} == SLOPPY_RULES
    # SARIF 2.1.0: one result per flag, rules from the registry and the lint's table.
    log = orjson.loads(sarif.read_bytes())
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    from recorder.health import KINDS
    from recorder.health.spec.rules import RULES

    assert rules == [k.name for k in KINDS] + [f"spec-violation/{r.id}" for r in RULES]
    assert len(run["results"]) == len(flags)
    lint_results = [r for r in run["results"] if r["ruleId"].startswith("spec-violation/")]
    assert {r["ruleId"] for r in lint_results} == {f"spec-violation/{r}" for r in SLOPPY_RULES}
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("note", "warning", "error")
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == str(rec.db)


# --- Clean third-party and second-generation peers ----------------------------------------------


@pytest.mark.skipif(not (NODE and EVERYTHING.exists()),
                    reason="node or @modelcontextprotocol/server-everything missing (.ci/run)")
@pytest.mark.parametrize(("mode", "transport", "path"), [
    ("sse", "sse", "/sse"), ("streamableHttp", "streamable-http", "/mcp")])
def test_server_everything_sessions_raise_no_warning(record, mode: str, transport: str,
                                                     path: str) -> None:
    from tests.recorder.test_ts_peer_e2e import drive

    proc = subprocess.Popen([str(NODE), "--require", str(PEERS / "loopback.cjs"),
                             str(EVERYTHING), mode], env=dict(os.environ, PORT="0"),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        port = next(line.split()[1] for line in proc.stderr if line.startswith("SSETAP_PORT "))
        rec = record(f"http://127.0.0.1:{port}")
        assert asyncio.run(drive(rec.url + path, transport)) == 3
        time.sleep(0.3)
        assert rec.stop() == 0, rec.output
    finally:
        proc.kill()
        proc.wait()
    code, flags = check(rec.db)
    assert of(flags, "spec-violation") == []
    # server-everything answers every origin (Access-Control-Allow-Origin: *): a real finding.
    assert {kind for kind, _ in serious(flags)} <= {"wildcard-cors"}
    assert code == 0


@pytest.mark.skipif(not MCP2_PYTHON, reason="no interpreter with mcp>=2 (SSETAP_MCP2_PYTHON)")
@pytest.mark.parametrize("transport", ["streamable-http"])  # mcp 2's Client needs 2026 HTTP
def test_mcp2_sessions_raise_no_warning(record, transport: str) -> None:
    peer = str(PEERS / "mcp2_peer.py")
    proc = subprocess.Popen([MCP2_PYTHON, peer, "server", transport], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        rec = record(f"http://127.0.0.1:{line.split()[1]}")
        url = rec.url + ("/sse" if transport == "sse" else "/mcp")
        out = subprocess.run([MCP2_PYTHON, peer, "client", url], capture_output=True,
                             text=True, timeout=60)
        assert out.stdout.startswith("OK "), out.stderr[-2000:]
        time.sleep(0.3)
        assert rec.stop() == 0, rec.output
    finally:
        proc.kill()
        proc.wait()
    code, flags = check(rec.db, "--fail-on", "warning")
    assert serious(flags) == [] and code == 0
