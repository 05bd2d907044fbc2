"""The mock as a resumable server: event ids on SSE answers, Last-Event-ID resumption, batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from replay_helpers import Capture, asking, open_client, record_capture, start_test_server

from recorder.model import SseEvent
from recorder.sse import SseParser
from replay.catalog import build_catalog
from replay.mock_server import MockServer
from replay.plan import RECORDED
from replay.recording import load_recordings

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
BATCH = [{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
          "params": {"name": "add", "arguments": {"a": 2, "b": 40}}},
         {"jsonrpc": "2.0", "id": 2, "method": "ping"},
         {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}]
COUNTDOWN = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
             "params": {"name": "countdown", "arguments": {"n": 3, "delay": 0.15},
                        "_meta": {"progressToken": "tok"}}}


@pytest.fixture
def mock(captures: dict[str, Capture]) -> Iterator[MockServer]:
    catalog = build_catalog(load_recordings(captures["streamable-http"].db, with_streams=True))
    with MockServer(catalog, timing=RECORDED).start() as server:
        yield server


async def _events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    parser = SseParser()
    async for chunk in response.aiter_bytes():
        for item in parser.feed(chunk):
            if isinstance(item, SseEvent):
                yield item


async def _open(http: httpx.AsyncClient, url: str, version: str = "2025-06-18") -> dict[str, str]:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}}
    response = await http.post(url, content=orjson.dumps(init), headers=HEADERS)
    assert response.status_code == 200
    headers = {**HEADERS, "Mcp-Session-Id": response.headers["mcp-session-id"]}
    await http.post(url, content=orjson.dumps({"jsonrpc": "2.0",
                                               "method": "notifications/initialized"}),
                    headers=headers)
    return headers


def _messages(events: list[SseEvent]) -> list[object]:
    return [orjson.loads(e.data) for e in events if e.data]


async def test_a_client_resuming_after_a_cut_stream_gets_exactly_what_it_missed(
    mock: MockServer,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await _open(http, mock.mcp_url)
        # Uncut, for reference: every event of the answer, each with an id.
        async with http.stream("POST", mock.mcp_url, content=orjson.dumps(COUNTDOWN),
                               headers=headers) as response:
            whole = [e async for e in _events(response)]
        assert all(e.id for e in whole) and len({e.id for e in whole}) == len(whole)
        # A log message, three progress notifications, then the result.
        assert len(_messages(whole)) == 5

        # Cut after the first event: the client goes away, the server goes on.
        first: list[SseEvent] = []
        async with http.stream("POST", mock.mcp_url, content=orjson.dumps(COUNTDOWN),
                               headers=headers) as response:
            async for event in _events(response):
                first.append(event)
                break
        await asyncio.sleep(0.2)
        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": first[-1].id}
        async with http.stream("GET", mock.mcp_url, headers=resume) as response:
            assert response.status_code == 200
            rest = [e async for e in _events(response)]
    # Exactly the missed events: none repeated, none lost, the stream ends after the result.
    assert _messages(first + rest) == _messages(whole)
    assert not {e.id for e in first} & {e.id for e in rest}
    assert {e.id for e in whole}.isdisjoint({e.id for e in first + rest})  # ids never reused


async def test_batches_are_refused_where_the_version_does_not_allow_them(
    mock: MockServer,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        # The capture's only session negotiated 2025-11-25: no batches there.
        headers = await _open(http, mock.mcp_url)
        refused = await http.post(mock.mcp_url, content=orjson.dumps(BATCH), headers=headers)
    assert refused.status_code == 400
    assert "removed in 2025-06-18" in refused.json()["error"]["message"]


def test_batches_are_answered_where_the_version_allows_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("batch") / "old.db"
    server = start_test_server("streamable-http")

    async def drive(url: str) -> None:
        with asking("2025-03-26"):
            async with open_client(url, "streamable-http") as session:
                await session.call_tool("add", {"a": 2, "b": 40})

    try:
        record_capture(db, server.url, lambda proxy: asyncio.run(drive(proxy + "/mcp")))
    finally:
        server.stop()
    catalog = build_catalog(load_recordings(db, with_streams=True))

    async def post_batches(url: str) -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as http:
            headers = await _open(http, url, "2025-03-26")
            answered = await http.post(url, content=orjson.dumps(BATCH), headers=headers)
            notified = await http.post(url, content=orjson.dumps(BATCH[2:]), headers=headers)
        return answered, notified

    with MockServer(catalog, timing=RECORDED).start() as mock:
        answered, only_notifications = asyncio.run(post_batches(mock.mcp_url))
    assert answered.status_code == 200
    one, two = answered.json()
    assert one["id"] == 1 and one["result"]["content"][0]["text"] == "42"
    assert two == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert only_notifications.status_code == 202
