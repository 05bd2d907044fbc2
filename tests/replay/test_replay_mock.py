"""The SDK's own client against `ssetap serve`: recorded answers, progress and heartbeats."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from replay_helpers import ROOT, Capture, McpError, open_client, run_scenario, text_of

from replay.catalog import PROGRESS, build_catalog
from replay.mock_server import MockServer
from replay.plan import RECORDED, Timing
from replay.recording import load_recordings

# Timing tolerance for re-streamed items on loopback (scheduling jitter, not pacing).
TOLERANCE = 0.08


def _mock(capture: Capture, timing: Timing = RECORDED) -> MockServer:
    catalog = build_catalog(load_recordings(capture.db, with_streams=True))
    return MockServer(catalog, timing=timing).start()


@pytest.fixture
def mock_of(captures: dict[str, Capture]) -> Iterator[object]:
    started: list[MockServer] = []

    def start(transport: str, timing: Timing = RECORDED) -> MockServer:
        server = _mock(captures[transport], timing)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _recorded_progress_gaps(capture: Capture) -> list[float]:
    catalog = build_catalog(load_recordings(capture.db, with_streams=True))
    reply = next(c.value for c in catalog.index.candidates
                 if isinstance(c.params, dict) and c.params.get("name") == "countdown")
    delays = [i.delay for i in reply.items if i.role == PROGRESS]
    return [b - a for a, b in itertools.pairwise(delays)]


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize(("recorded", "client"), [("sse", "sse"),
                                                  ("streamable-http", "streamable-http"),
                                                  ("sse", "streamable-http")])
async def test_sdk_client_gets_the_recorded_session(
    captures: dict[str, Capture], mock_of: object, recorded: str, client: str,
) -> None:
    server = mock_of(recorded)  # type: ignore[operator]
    url = server.sse_url if client == "sse" else server.mcp_url
    live = await run_scenario(url, client, linger=0)

    original = captures[recorded].client
    for key in ("tools", "echo", "add", "countdown", "slow", "ask", "resources"):
        assert live[key] == original[key], key
    assert live["readme"].startswith("ssetap demo server")
    assert live["prompt"] == "Please greet Ada warmly."
    # The recorded sampling request was sent to this client too (its answer is not used:
    # the tool result is the recorded one).
    assert live["sampled"] == ["2+2?"]
    # Progress arrives with the recorded spacing.
    assert [p for p, _ in live["progress"]] == [1.0, 2.0, 3.0]
    recorded_gaps = _recorded_progress_gaps(captures[recorded])
    live_gaps = _gaps([t for _, t in live["progress"]])
    assert all(abs(a - b) < TOLERANCE for a, b in zip(live_gaps, recorded_gaps, strict=True)), \
        (live_gaps, recorded_gaps)


async def _comment_times(url: str, *, count: int, headers: dict[str, str] | None = None,
                         ) -> list[float]:
    """Seconds from the response head to each of the first `count` SSE comments."""
    times: list[float] = []
    async with (httpx.AsyncClient(timeout=5) as http,
                http.stream("GET", url, headers={"Accept": "text/event-stream",
                                                 **(headers or {})}) as response):
        assert response.status_code == 200
        opened = time.monotonic()
        async for line in response.aiter_lines():
            if line.startswith(":"):
                times.append(time.monotonic() - opened)
                if len(times) == count:
                    break
    return times


@pytest.mark.parametrize("recorded", ["sse", "streamable-http"])
async def test_heartbeats_keep_their_recorded_timing(
    captures: dict[str, Capture], mock_of: object, recorded: str,
) -> None:
    server = mock_of(recorded)  # type: ignore[operator]
    expected = [i.delay for i in server.mock.catalog.stream_items if i.kind == "comment"][:3]
    assert len(expected) == 3, "the capture should hold session-stream heartbeats"
    if recorded == "sse":
        live = await _comment_times(server.sse_url, count=3)
    else:
        async with httpx.AsyncClient(timeout=5) as http:
            init = await http.post(server.mcp_url, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}},
                headers={"Accept": "application/json, text/event-stream"})
            session = init.headers["mcp-session-id"]
        live = await _comment_times(server.mcp_url, count=3,
                                    headers={"Mcp-Session-Id": session})
    assert all(abs(a - b) < TOLERANCE for a, b in zip(live, expected)), (live, expected)


async def test_unmatched_request_names_the_closest_recorded_one(mock_of: object) -> None:
    server = mock_of("streamable-http", Timing(None))  # type: ignore[operator]
    async with open_client(server.mcp_url, "streamable-http") as session:
        assert text_of(await session.call_tool("echo", {"text": "hello"})) == "hello"
        with pytest.raises(McpError) as raised:
            await session.call_tool("echo", {"text": "goodbye"})
        message = raised.value.error.message
        assert raised.value.error.code == -32602
        assert "closest recorded request: tools/call" in message
        assert '"name":"echo"' in message and '"text":"hello"' in message
        with pytest.raises(McpError) as raised:
            await session.complete(  # never recorded at all
                __import__("mcp").types.PromptReference(type="ref/prompt", name="greet"),
                {"name": "name", "value": "A"})
        assert raised.value.error.code == -32601


async def test_fast_and_scaled_timing(captures: dict[str, Capture], mock_of: object) -> None:
    fast = mock_of("sse", Timing(None))  # type: ignore[operator]
    started = time.monotonic()
    live = await run_scenario(fast.mcp_url, "streamable-http", linger=0)
    fast_seconds = time.monotonic() - started
    assert live["countdown"] == "liftoff" and len(live["progress"]) == 3
    # Recorded, the countdown and slow tools alone take about 0.65 s.
    assert fast_seconds < 0.6


def test_serve_command(captures: dict[str, Capture]) -> None:
    """`ssetap serve` as a process: prints its URLs, serves an SDK client, exits 0 on SIGINT."""
    cmd = [sys.executable, "-m", "recorder.cli", "serve", str(captures["sse"].db),
           "--listen", "127.0.0.1:0", "--timing", "fast"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(20), "ssetap serve printed nothing"
        match = re.search(r"on (http://\S+/mcp) \(Streamable HTTP\) and (http://\S+/sse)",
                          lines[0])
        assert match, lines

        async def use() -> str:
            async with open_client(match.group(2), "sse") as session:
                return text_of(await session.call_tool("add", {"a": 2, "b": 40}))

        assert asyncio.run(use()) == "42"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, lines
    assert Path(captures["sse"].db).exists()
