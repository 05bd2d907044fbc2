"""End-to-end tests of the demo MCP server and scripted client, without a proxy."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from recorder.demo_client import run_script
from recorder.demo_server import ServerHandle, Transport, start_server
from tests.sdk_peers import GENERATION

CONFIGS: dict[str, tuple[Transport, dict[str, bool]]] = {
    "sse": ("sse", {}),
    "streamable-sse": ("streamable-http", {}),
    "streamable-json": ("streamable-http", {"json_response": True}),
    "streamable-stateless": ("streamable-http", {"stateless": True}),
}


def _port_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(params=list(CONFIGS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[ServerHandle, dict[str, bool]]]:
    transport, options = CONFIGS[request.param]
    handle = start_server(
        transport,
        json_response=options.get("json_response", False),
        stateless=options.get("stateless", False),
    )
    try:
        yield handle, options
    finally:
        handle.stop()
    assert not handle.thread.is_alive()
    assert _port_closed(handle.port)


async def test_client_script_against_each_transport(
    server: tuple[ServerHandle, dict[str, bool]],
) -> None:
    handle, options = server
    lines: list[str] = []
    summary = await run_script(handle.mcp_url, handle.transport, log=lines.append)

    assert summary["errors"] == []
    assert summary["server_name"] == "ssetap-demo"
    assert summary["tools"] == ["add", "countdown", "echo", "fail", "hang", "slow"]
    # 2026-07-28 removed `ping`: the v2 client against the v2 demo server skips it.
    assert summary["ping"] is True or summary["protocol_version"] >= "2026-07-28"
    assert summary["echo"] == "hello ssetap"
    assert summary["add"] == 42
    assert summary["countdown"] == "liftoff"
    assert summary["slow"] == "slept 0.5s"
    assert summary["fail"]["is_error"] is True
    # Both generations: an unknown tool is an isError result, not a JSON-RPC error.
    assert summary["unknown_tool"] == {"is_error": True, "text": "Unknown tool: no_such_tool"}
    if GENERATION >= 2:
        # SDK v2 hides the exception's text and answers an unknown resource with -32602.
        assert summary["fail"]["text"] == "Error executing tool fail"
        assert summary["missing_resource"] == {"code": -32602,
                                               "message": "Unknown resource: demo://missing"}
    else:
        assert "deliberate failure" in summary["fail"]["text"]
        assert summary["missing_resource"] == {"code": 0,
                                               "message": "Unknown resource: demo://missing"}
    assert summary["method_not_found"] == {"code": -32601, "message": "Method not found"}
    assert summary["resource"].startswith("ssetap demo server")
    assert summary["prompt"] == "Please greet Ada warmly."
    if options.get("json_response"):
        # A JSON reply has room for the response only: the SDK drops related notifications.
        assert summary["progress"] == []
        assert summary["logs"] == []
    else:
        assert summary["progress"] == [(1.0, 3.0, "T-3"), (2.0, 3.0, "T-2"), (3.0, 3.0, "T-1")]
        assert summary["logs"] == ["countdown from 3"]
    assert lines[-1] == "closed"


async def _read_sse(url: str, lines: list[str], *, until_pings: int | None = None) -> None:
    """Append raw SSE lines to `lines` until `until_pings` pings arrive (or until cancelled)."""
    async with (
        httpx.AsyncClient(timeout=5) as client,
        client.stream("GET", url, headers={"Accept": "text/event-stream"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            lines.append(line)
            if (
                until_pings is not None
                and sum(x.startswith(": ping") for x in lines) >= until_pings
            ):
                return


async def test_ping_interval_heartbeats_on_legacy_stream() -> None:
    fast = start_server("sse", ping_interval=0.2)
    default = start_server("sse")
    fast_lines: list[str] = []
    default_lines: list[str] = []
    try:
        watcher = asyncio.create_task(_read_sse(default.mcp_url, default_lines))
        try:
            # Three 0.2 s heartbeats take ~0.6 s; the default interval would take 45 s, and
            # its first ping comes at 15 s: 10 s is margin for a loaded machine, not a race.
            async with asyncio.timeout(10):
                await _read_sse(fast.mcp_url, fast_lines, until_pings=3)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    finally:
        fast.stop()
        default.stop()

    assert fast_lines[0] == "event: endpoint"
    assert fast_lines[1].startswith("data: /messages/?session_id=")
    # sse-starlette's heartbeat is an SSE comment carrying a UTC timestamp.
    assert fast_lines[-1].startswith(": ping - 20"), fast_lines
    # The override is per server thread: a server without ping_interval keeps the 15 s default.
    assert default_lines[0] == "event: endpoint"
    assert not any(line.startswith(":") for line in default_lines), default_lines


async def test_stop_is_prompt_with_open_stream() -> None:
    handle = start_server("sse", ping_interval=0.2)
    try:
        async with (
            httpx.AsyncClient(timeout=5) as client,
            client.stream("GET", handle.mcp_url) as response,
        ):
            lines = response.aiter_lines()
            assert await anext(lines) == "event: endpoint"
            started = time.monotonic()
            handle.stop()
            elapsed = time.monotonic() - started
            # stop() drops the connection mid-body, as a killed server would.
            with pytest.raises(httpx.RemoteProtocolError):
                async for _ in lines:
                    pass
    finally:
        handle.stop()
    assert elapsed < 1.0
    assert not handle.thread.is_alive()
    assert _port_closed(handle.port)


def test_rejects_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_server("sse", host="0.0.0.0")


def test_handle_urls() -> None:
    with start_server("streamable-http") as handle:
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        assert handle.mcp_url == handle.url + "/mcp"
        # DNS-rebinding protection stays on: a foreign Host header is refused.
        response = httpx.post(handle.mcp_url, json={}, headers={"Host": "evil.example"}, timeout=5)
        assert response.status_code == 421
    assert not handle.thread.is_alive()
