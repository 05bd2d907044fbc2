"""mcp>=2 (2026-07-28: `server/discover`, no sessions) recorded through the real recorder.

On Python 3.12+ mcp 2 shares the venv with ssetap and runs from this interpreter; on 3.11 it
cannot share one with mitmproxy 11, so it runs from another: $SSETAP_MCP2_PYTHON, or the venv
`.ci/run` provisions at ~/.cache/ssetap/mcp2-venv (see tests/sdk_peers.py).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.recorder.capture_query import q
from tests.sdk_peers import GENERATION, V1_ONLY, mcp2_python

PEER = Path(__file__).parent / "peers" / "mcp2_peer.py"
PYTHON = mcp2_python()

pytestmark = pytest.mark.skipif(
    not PYTHON, reason="no interpreter with mcp>=2 (set SSETAP_MCP2_PYTHON or run .ci/run)")



@pytest.fixture
def mcp2_server() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(transport: str) -> str:
        proc = subprocess.Popen([PYTHON, str(PEER), "server", transport], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        return f"http://127.0.0.1:{line.split()[1]}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_2026_client_and_server_group_into_one_sessionless_session(record, mcp2_server):
    rec = record(mcp2_server("streamable-http"))
    out = subprocess.run([PYTHON, str(PEER), "client", rec.url + "/mcp"], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("OK ['add', 'countdown'] 5 liftoff 3"), out.stderr[-2000:]
    assert rec.stop() == 0
    sessions = q(rec.db, "SELECT transport, client_name, server_name, protocol_version, key "
                         "FROM sessions")
    assert len(sessions) == 1
    transport, client, server, version, key = sessions[0]
    assert (transport, client, server, version) == ("streamable-http", "mcp", "mcp2-peer",
                                                     "2026-07-28")
    assert key.startswith("anon:")  # no Mcp-Session-Id in this revision
    calls = q(rec.db, "SELECT method, outcome, progress_count FROM calls ORDER BY id")
    assert [c[0] for c in calls] == ["server/discover", "tools/list", "tools/call", "tools/call"]
    assert all(c[1] == "result" for c in calls) and calls[-1][2] == 3
    methods = {m for (m,) in q(rec.db, "SELECT request_headers FROM exchanges")
               if "mcp-method" in m.lower()}
    assert methods  # the 2026 headers are kept as they came


@pytest.mark.skipif(GENERATION >= 2, reason=V1_ONLY)
@pytest.mark.parametrize(("transport", "path"), [("streamable-http", "/mcp"), ("sse", "/sse")])
def test_v1_client_against_v2_server(record, mcp2_server, transport, path):
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamablehttp_client

    from recorder.demo_client import run_script  # noqa: F401  (imports the v1 SDK client)

    rec = record(mcp2_server(transport))

    async def go() -> None:
        opener = sse_client(rec.url + path) if transport == "sse" else \
            streamablehttp_client(rec.url + path)
        async with opener as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                await session.call_tool("add", {"a": 1, "b": 2})

    asyncio.run(go())
    assert rec.stop() == 0
    (row,) = q(rec.db, "SELECT transport, server_name FROM sessions")
    assert row == ("sse" if transport == "sse" else "streamable-http", "mcp2-peer")
    outcomes = q(rec.db, "SELECT method, outcome FROM calls ORDER BY id")
    # The v1 client lists tools on its own after a call (to validate its structured output).
    assert outcomes[:2] == [("initialize", "result"), ("tools/call", "result")]
    assert all(outcome == "result" for _, outcome in outcomes)
