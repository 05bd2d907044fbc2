"""A third-party peer: the TypeScript SDK's `server-everything` (npm), recorded end to end.

It frames SSE with LF, names the legacy session `sessionId`, sends priming events on
Streamable HTTP, and asks the client for sampling (a server-to-client request answered by a
POST). `.ci/run` installs it into ~/.cache/ssetap/npm; $SSETAP_SERVER_EVERYTHING overrides.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.recorder.capture_query import q

PRELOAD = Path(__file__).parent / "peers" / "loopback.cjs"
DEFAULT = (Path.home() / ".cache" / "ssetap" / "npm" / "node_modules" / "@modelcontextprotocol"
           / "server-everything" / "dist" / "index.js")
ENTRY = Path(os.environ.get("SSETAP_SERVER_EVERYTHING", DEFAULT))
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    not (NODE and ENTRY.exists()),
    reason="node or @modelcontextprotocol/server-everything missing (run .ci/run)")



@pytest.fixture
def everything() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str) -> str:
        proc = subprocess.Popen([str(NODE), "--require", str(PRELOAD), str(ENTRY), mode],
                                env=dict(os.environ, PORT="0"), stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
        procs.append(proc)
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("SSETAP_PORT "):
                return f"http://127.0.0.1:{line.split()[1]}"
        raise RuntimeError("server-everything did not start")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


async def drive(url: str, transport: str) -> int:
    from mcp import ClientSession, types
    from mcp.client.sse import sse_client
    try:  # the name since mcp 1.24, and the only one in mcp 2
        from mcp.client.streamable_http import streamable_http_client
    except ImportError:
        from mcp.client.streamable_http import streamablehttp_client as streamable_http_client

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="hi"))

    progress: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    opener = sse_client(url) if transport == "sse" else streamable_http_client(url)
    async with opener as streams:
        async with ClientSession(streams[0], streams[1], sampling_callback=sampling) as session:
            await session.initialize()
            await session.list_tools()
            await session.call_tool("echo", {"message": "hello"})
            await session.call_tool("get-sum", {"a": 2, "b": 3})
            await session.call_tool("trigger-long-running-operation",
                                    {"duration": 0.3, "steps": 3}, progress_callback=on_progress)
            await session.call_tool("trigger-sampling-request", {"prompt": "say hi"})
    return len(progress)


@pytest.mark.parametrize(("mode", "transport", "path"), [
    ("sse", "sse", "/sse"), ("streamableHttp", "streamable-http", "/mcp")])
def test_server_everything_session(record, everything, mode, transport, path):
    rec = record(everything(mode))
    progress = asyncio.run(drive(rec.url + path, transport))
    assert rec.stop() == 0
    db = rec.db
    ((kind, server_name),) = q(db, "SELECT transport, server_name FROM sessions")
    assert kind == transport and server_name and "everything" in server_name
    calls = q(db, "SELECT direction, method, outcome, progress_count FROM calls ORDER BY id")
    assert all(c[2] == "result" for c in calls), calls
    # The server's sampling request travelled s2c and pairs with the client's POSTed answer.
    assert ("s2c", "sampling/createMessage", "result", 0) in calls
    long_running = [c for c in calls if c[1] == "tools/call"][2]
    assert long_running[3] == progress == 3
    # LF framing is parsed as such (no CR anywhere in this peer's streams).
    raw = b"".join(d for (d,) in q(db, "SELECT data FROM chunks"))
    assert b"\r" not in raw and b"\n\n" in raw
    if transport == "streamable-http":
        priming = q(db, "SELECT count(*) FROM sse_events WHERE kind='event' AND data='' "
                        "AND event_id IS NOT NULL")[0][0]
        assert priming >= 1  # 2025-11-25 priming events, stored as events, not parse errors
        assert q(db, "SELECT count(*) FROM messages WHERE kind='invalid'") == [(0,)]
