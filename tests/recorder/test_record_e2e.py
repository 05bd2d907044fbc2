"""End to end: real `ssetap record` in front of real SDK servers, driven by the SDK's client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from recorder.cli import main as ssetap
from recorder.demo_client import run_script
from tests.recorder.capture_query import q
from tests.sdk_peers import DEMO_PROTOCOL, FIRST_METHOD


def run_demo_client(url: str, transport: str) -> dict[str, Any]:
    return asyncio.run(run_script(url, transport, log=lambda _: None))  # type: ignore[arg-type]


CASES = [
    pytest.param("sse", {}, "/sse", id="legacy-sse"),
    pytest.param("streamable-http", {}, "/mcp", id="streamable-sse"),
    pytest.param("streamable-http", {"json_response": True}, "/mcp", id="streamable-json"),
    pytest.param("streamable-http", {"stateless": True}, "/mcp", id="streamable-stateless"),
]


@pytest.mark.parametrize(("transport", "options", "path"), CASES)
def test_sdk_session_is_recorded_whole(record, mcp_server, transport, options, path, capsys):
    server = mcp_server(transport, ping_interval=0.2, **options)
    rec = record(server.url)
    summary = run_demo_client(rec.url + path, transport)
    assert not summary["errors"], summary["errors"]
    assert rec.stop() == 0
    db = rec.db

    sessions = q(db, "SELECT transport, client_name, server_name, protocol_version, id FROM sessions")
    expected_transport = "sse" if transport == "sse" else "streamable-http"
    assert [s[:3] for s in sessions] == [(expected_transport, "mcp", "ssetap-demo")]
    assert sessions[0][3] == DEMO_PROTOCOL
    session_id = sessions[0][4]

    # Every JSON-RPC message belongs to the session; each request has exactly one answer.
    assert q(db, "SELECT count(*) FROM messages WHERE session_id IS NOT ? ", session_id) == [(0,)]
    calls = q(db, "SELECT method, name, outcome, latency_ms, progress_count, error_code "
                  "FROM calls WHERE session_id = ? ORDER BY id", session_id)
    methods = [c[0] for c in calls]
    assert methods[0] == FIRST_METHOD
    assert methods.count("tools/call") == 6  # echo, add, countdown, slow, fail, unknown tool
    assert all(c[2] in ("result", "error") for c in calls), calls
    by_name = {c[1]: c for c in calls if c[0] == "tools/call"}
    # JSON-response mode has no stream to carry progress; elsewhere every one is linked.
    assert by_name["countdown"][4] == len(summary["progress"])
    assert len(summary["progress"]) > 0 or options.get("json_response")
    assert by_name["slow"][3] >= 500  # slow(0.5): latency measured across the proxy
    assert by_name["slow"][3] < 5000
    errors = [c for c in calls if c[2] == "error"]
    assert {c[0] for c in errors} >= {"resources/read"}
    # Requests and responses pair up one to one in the messages table too.
    kinds = dict(q(db, "SELECT kind, count(*) FROM messages WHERE session_id=? GROUP BY kind",
                   session_id))
    assert kinds["request"] == len(calls)
    assert kinds["result"] + kinds.get("error", 0) == len(calls)
    initialized = 1 if FIRST_METHOD == "initialize" else 0  # 2026-07-28 has no handshake
    assert kinds.get("notification", 0) >= initialized + len(summary["progress"])

    # Heartbeats: the 0.2 s pings show up as comments on the SSE streams.
    comments = q(db, "SELECT count(*) FROM sse_events WHERE kind='comment' "
                     "AND data LIKE 'ping - %'")[0][0]
    # 2026-07-28 has no GET stream, and its POST streams last one call: only legacy SSE and
    # the handshake-era session stream are long enough for 0.2 s heartbeats to show.
    if transport == "sse" or (not options and FIRST_METHOD == "initialize"):
        assert comments >= 2, comments
    # Raw chunks re-assemble to every stored event, byte for byte.
    for (stream_id,) in q(db, "SELECT id FROM streams WHERE session_id=?", session_id):
        raw = b"".join(r[0] for r in q(db, "SELECT data FROM chunks WHERE stream_id=? "
                                           "ORDER BY offset", stream_id))
        for start, end, kind in q(db, 'SELECT start, "end", kind FROM sse_events '
                                      "WHERE stream_id=?", stream_id):
            assert 0 <= start < end <= len(raw), (kind, start, end, len(raw))

    # The CLI agrees with the database.
    assert ssetap(["sessions", str(db), "--json"]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert listed[0]["transport"] == expected_transport
    assert listed[0]["requests"] == listed[0]["answered"] == len(calls)
    assert listed[0]["pending"] == 0
    assert ssetap(["show", str(db), str(session_id), "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert [c["method"] for c in shown["calls"]] == methods
    assert all(c["direction"] == "c2s" for c in shown["calls"])
    assert all(s["events"] >= 0 for s in shown["streams"])
    # A 2026-07-28 session in JSON-response mode has no SSE stream at all (no GET stream).
    assert shown["streams"] or (options.get("json_response") and FIRST_METHOD != "initialize")


def test_latency_is_measured_per_call(record, mcp_server):
    server = mcp_server("streamable-http")
    rec = record(server.url)

    async def go() -> float:
        from recorder.demo_client import connect

        async with connect(rec.url + "/mcp", "streamable-http") as (session, _name, _version):
            loop = asyncio.get_running_loop()
            began = loop.time()
            await session.call_tool("slow", {"seconds": 0.8})
            return (loop.time() - began) * 1000

    client_ms = asyncio.run(go())
    rec.stop()
    ((latency,),) = q(rec.db, "SELECT latency_ms FROM calls WHERE name='slow'")
    assert 800 <= latency <= client_ms + 1


def test_secrets_stay_out_of_the_capture(record, mcp_server, tmp_path):
    server = mcp_server("sse")
    token = "sk-live-0123456789abcdefSECRET"
    cookie = "AWSALB=stickycookievalue123456"
    rec = record(server.url)
    session_id = _legacy_handshake(rec.url, token, cookie)
    rec.stop()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("capture0.db*") if p.is_file()
                    and not p.name.endswith(".key"))
    assert token.encode() not in data
    assert b"stickycookievalue123456" not in data
    assert session_id.encode() not in data
    # Redacted consistently: one session, the session id pseudonymised the same everywhere.
    assert q(rec.db, "SELECT count(*) FROM sessions") == [(1,)]
    (url,) = q(rec.db, "SELECT url FROM exchanges WHERE method='POST' LIMIT 1")[0]
    (endpoint,) = q(rec.db, "SELECT data FROM sse_events WHERE type='endpoint'")[0]
    assert url.endswith(endpoint.split("?")[1])
    headers = orjson.loads(q(rec.db, "SELECT request_headers FROM exchanges LIMIT 1")[0][0])
    auth = dict((k.lower(), v) for k, v in headers)["authorization"]
    assert auth.startswith("Bearer redacted:token:")
    # The capture and its sidecars are private to their owner.
    for p in tmp_path.glob("capture0.db*"):
        assert p.stat().st_mode & 0o077 == 0, p


def test_raw_mode_keeps_secrets(record, mcp_server):
    server = mcp_server("sse")
    token = "sk-live-0123456789abcdefSECRET"
    rec = record(server.url, "--raw")
    session_id = _legacy_handshake(rec.url, token, "a=b")
    rec.stop()
    data = rec.db.read_bytes() + Path(f"{rec.db}-wal").read_bytes() \
        if Path(f"{rec.db}-wal").exists() else rec.db.read_bytes()
    assert token.encode() in data
    assert session_id.encode() in data


def _legacy_handshake(url: str, token: str, cookie: str) -> str:
    """GET /sse, read the endpoint, POST initialize with credentials; returns the session id."""
    headers = {"Authorization": f"Bearer {token}", "Cookie": cookie}
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", url + "/sse", headers=headers) as stream:
            lines = stream.iter_lines()
            endpoint = ""
            for line in lines:
                if line.startswith("data:"):
                    endpoint = line[5:].strip()
                    break
            body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2024-11-05", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}}
            reply = client.post(url + endpoint, json=body, headers=headers)
            assert reply.status_code == 202
            for line in lines:
                if line.startswith("data:") and '"result"' in line:
                    break
    return endpoint.split("session_id=")[1]


def test_plain_http_passes_through_and_is_marked_non_mcp(record, raw_server):
    async def responder(method, path, headers, body, writer):
        page = b"<html>hello</html>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                     + str(len(page)).encode() + b"\r\n\r\n" + page)
        await writer.drain()

    server = raw_server(responder)
    rec = record(server.url)
    reply = httpx.get(rec.url + "/index.html")
    assert reply.text == "<html>hello</html>"
    rec.stop()
    assert q(rec.db, "SELECT mcp, status, session_id FROM exchanges") == [(0, 200, None)]
    assert q(rec.db, "SELECT count(*) FROM sessions") == [(0,)]


@pytest.mark.parametrize(("transport", "path"), [("sse", "/sse"), ("streamable-http", "/mcp")])
def test_regular_proxy_mode_with_http_proxy(record, mcp_server, transport, path):
    import os
    import subprocess
    import sys

    server = mcp_server(transport)
    rec = record(None, "--mode", "regular")
    env = dict(os.environ, HTTP_PROXY=rec.url, http_proxy=rec.url, NO_PROXY="", no_proxy="")
    out = subprocess.run([sys.executable, "-m", "recorder.demo_client", server.url + path],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert rec.stop() == 0
    (session,) = q(rec.db, "SELECT transport, server, client_name FROM sessions")
    assert session == ("sse" if transport == "sse" else "streamable-http", server.url, "mcp")
    assert q(rec.db, "SELECT count(*) FROM calls WHERE outcome = 'pending'") == [(0,)]
