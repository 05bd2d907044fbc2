"""`ssetap serve --fault` and `ssetap_mock(faults=[...])`: the mock misbehaves on purpose.

Real captures of the SDK scenario (tests/replay/conftest.py), served with faults to the
official SDK client on both transports; what the client experienced, and what the mock says
it injected.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from replay_helpers import ROOT, Capture, McpError, open_client, text_of, types

from recorder.faults import fault_config
from replay.mock_server import serve_capture
from replay.plan import parse_timing

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


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cut_stream_on_the_mock(captures: dict[str, Capture], transport: str) -> None:
    server = serve_capture(str(captures[transport].db), faults=fault_config(["cut-stream=2"]),
                           timing=parse_timing("fast"))
    try:
        url = server.sse_url if transport == "sse" else server.mcp_url
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        if transport == "sse":
            # The session stream carries everything: the endpoint event and initialize's
            # answer are its two events, then it is cut and the legacy client's session dies.
            with pytest.raises(BaseException):  # noqa: B017 (an exception group, or McpError)
                async with open_client(url, transport) as session:
                    await session.call_tool("echo", {"text": "hello"})
        else:
            async with open_client(url, transport) as session:
                with pytest.raises(McpError):
                    await session.send_request(
                        types.ClientRequest(types.CallToolRequest(
                            method="tools/call", params=types.CallToolRequestParams(
                                name="countdown", arguments={"n": 3, "delay": 0.15},
                                _meta={"progressToken": "p1"}))),
                        types.CallToolResult, request_read_timeout_seconds=timedelta(seconds=1.5),
                        progress_callback=on_progress)
            # The mock keeps an event store (ids on its answers): after the cut (a log message
            # and one progress notification) the SDK client resumes with GET + Last-Event-ID
            # and gets the missed progress; the resumed stream is a response stream too, cut
            # before the result, so the call still times out.
            assert progress == [1.0, 2.0, 3.0]
        assert server.faults is not None
        actions = [i.action for i in server.faults.injections]
        assert set(actions) == {"cut"}
        assert len(actions) == 1 if transport == "sse" else len(actions) >= 2
    finally:
        server.stop()


async def test_delay_on_the_mock(ssetap_mock: Callable[..., str],
                                 captures: dict[str, Capture]) -> None:
    url = ssetap_mock(captures["streamable-http"].db, timing="fast",
                      faults=["delay=tools/call:add:1s"])
    async with open_client(url, "streamable-http") as session:
        started = time.monotonic()
        assert text_of(await session.call_tool("echo", {"text": "hello"})) == "hello"
        fast = time.monotonic() - started
        started = time.monotonic()
        assert text_of(await session.call_tool("add", {"a": 2, "b": 40})) == "42"
        slow = time.monotonic() - started
    assert slow >= 1.0 and slow > fast


def test_serve_fault_recorded_by_the_proxy_is_flagged(captures: dict[str, Capture], record,
                                                      tmp_path) -> None:
    """`ssetap serve --fault` as a process, `ssetap record` in front, then `ssetap check`."""
    from tests.recorder.fault_helpers import check, serious

    proc = subprocess.Popen([sys.executable, "-m", "recorder.cli", "serve",
                             str(captures["streamable-http"].db), "--listen", "127.0.0.1:0",
                             "--timing", "fast", "--fault", "error=tools/call:add:-32099"],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        mock_url = line.split(" on ")[1].split()[0].removesuffix("/mcp")
        rec = record(mock_url)

        async def scenario() -> tuple[str, int]:
            async with open_client(rec.url + "/mcp", "streamable-http") as session:
                echo = text_of(await session.call_tool("echo", {"text": "hello"}))
                with pytest.raises(McpError) as caught:
                    await session.call_tool("add", {"a": 2, "b": 40})
                return echo, caught.value.error.code

        assert asyncio.run(scenario()) == ("hello", -32099)
        assert rec.stop() == 0
        _, report = check(rec.db)
        errors = [f for g in report["sessions"] for f in g["flags"] if f["kind"] == "error-response"]
        # The proxy in front did not inject it, so the capture has no injection to match.
        assert len(errors) == 1 and not errors[0]["injected"]
        assert serious(report) == []
    finally:
        proc.terminate()
        proc.wait(10)


async def test_idle_cut_on_the_mock_the_client_reopens_its_stream(
        captures: dict[str, Capture]) -> None:
    # timing fast: no heartbeats, so the session stream is quiet and gets cut.
    server = serve_capture(str(captures["streamable-http"].db), timing=parse_timing("fast"),
                           faults=fault_config(["idle-cut=500ms"]))
    try:
        async with open_client(server.mcp_url, "streamable-http") as session:
            # The client reopens its GET stream after the recorded `retry:` the mock replays
            # (with the SDK's backoff): wait long enough for a second cut.
            await asyncio.sleep(5.0)
            assert text_of(await session.call_tool("echo", {"text": "hello"})) == "hello"
        assert server.faults is not None
        cuts = [i for i in server.faults.injections if i.action == "idle-cut"]
        assert len(cuts) >= 2  # the SDK client reopened its GET stream after the first cut
    finally:
        server.stop()


async def test_buffer_on_the_mock_releases_progress_in_one_burst(
        captures: dict[str, Capture]) -> None:
    # timing recorded: the countdown's progress leaves 0.15 s apart, unless buffered.
    server = serve_capture(str(captures["streamable-http"].db),
                           faults=fault_config(["buffer=5s"]))
    try:
        arrived: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            arrived.append(time.monotonic())

        async with open_client(server.mcp_url, "streamable-http") as session:
            result = await session.call_tool("countdown", {"n": 3, "delay": 0.15},
                                             progress_callback=on_progress)
            assert text_of(result) == "liftoff"
        assert len(arrived) == 3 and arrived[-1] - arrived[0] < 0.1  # one burst, at the end
        assert server.faults is not None
        assert "released" in [i.action for i in server.faults.injections]
    finally:
        server.stop()
