"""`ssetap serve --fault` and `ssetap_mock(faults=[...])`: the mock misbehaves on purpose.

Real captures of the SDK scenario (tests/replay/conftest.py), served with faults to the
official SDK client on both transports; what the client experienced, and what the mock says
it injected.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from mcp import McpError, types
from replay_helpers import ROOT, Capture, open_client, text_of

from recorder.faults import fault_config
from replay.mock import serve_capture

TRANSPORTS = ["sse", "streamable-http"]
pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_fixture_error_fault_answers_the_matching_call(
    ssetap_mock: Callable[..., str], captures: dict[str, Capture], transport: str,
) -> None:
    url = ssetap_mock(captures[transport].db, timing="fast", transport=transport,
                      faults=["error=tools/call:echo:-32050"])
    async with open_client(url, transport) as session:
        with pytest.raises(McpError) as caught:
            await session.call_tool("echo", {"text": "hello"})
        assert caught.value.error.code == -32050
        tools = await session.list_tools()  # everything else as recorded
        assert {t.name for t in tools.tools} >= {"echo"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_hang_fault_never_answers(captures: dict[str, Capture], transport: str) -> None:
    server = serve_capture(str(captures[transport].db), faults=fault_config(
        ["hang=tools/call:echo"]))
    try:
        url = server.sse_url if transport == "sse" else server.mcp_url
        async with open_client(url, transport) as session:
            with pytest.raises(McpError):
                await session.send_request(
                    types.ClientRequest(types.CallToolRequest(
                        method="tools/call",
                        params=types.CallToolRequestParams(name="echo",
                                                           arguments={"text": "hello"}))),
                    types.CallToolResult, request_read_timeout_seconds=timedelta(seconds=1.5))
        assert server.faults is not None
        actions = [i.action for i in server.faults.injections]
        assert actions == (["hang"] if transport == "streamable-http" else ["dropped-response"])
    finally:
        server.stop()


async def test_session_lost_gets_404(ssetap_mock: Callable[..., str],
                                     captures: dict[str, Capture]) -> None:
    url = ssetap_mock(captures["streamable-http"].db, timing="fast",
                      faults=["session-lost=500ms"])
    async with open_client(url, "streamable-http") as session:
        assert text_of(await session.call_tool("echo", {"text": "hello"})) == "hello"
        await asyncio.sleep(0.8)
        with pytest.raises(McpError):
            await session.call_tool("echo", {"text": "hello"})


def test_serve_rejects_a_bad_spec_before_starting(captures: dict[str, Capture]) -> None:
    proc = subprocess.run([sys.executable, "-m", "recorder.cli", "serve",
                           str(captures["sse"].db), "--listen", "127.0.0.1:0",
                           "--fault", "cut-stream=zero"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cut-stream=zero" in lines[0], proc.stderr
