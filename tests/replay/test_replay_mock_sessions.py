"""A multi-session mock: each client session is served from the recorded session it matches.

The capture holds two sessions recorded by the SDK's client through `ssetap record`: one
asking 2025-11-25 against the normal server, then (the server restarted on the same port as
its next version) one asking 2025-06-18, whose `echo` answers in capitals.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import orjson
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from replay_helpers import LiveServer, asking, record_capture, start_test_server, text_of

from replay.catalog import (
    RESPONSE,
    Catalog,
    Reply,
    ScriptItem,
    SessionProfile,
    build_catalog,
    choose_profile,
)
from replay.matching import Candidate, MatchIndex
from replay.mock import MockApp
from replay.mock_server import MockServer
from replay.plan import FAST
from replay.recording import load_recordings

NEW, OLD = "2025-11-25", "2025-06-18"


async def _session(url: str, version: str, client: str) -> tuple[str, str]:
    """(negotiated protocol version, echo's answer) for an SDK client asking `version`."""
    with asking(version):
        async with contextlib.AsyncExitStack() as stack:
            streams = await stack.enter_async_context(streamable_http_client(url))
            session = await stack.enter_async_context(ClientSession(
                streams[0], streams[1],
                client_info=types.Implementation(name=client, version="1.0")))
            result = await session.initialize()
            negotiated = getattr(result, "protocolVersion", None) or result.protocol_version
            echo = text_of(await session.call_tool("echo", {"text": "hello"}))
    return str(negotiated), echo


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("two") / "two.db"
    servers: list[LiveServer] = [start_test_server("streamable-http")]

    def drive(proxy: str) -> None:
        assert asyncio.run(_session(proxy + "/mcp", NEW, "client-new")) == (NEW, "hello")
        port = servers[0].server.port
        servers[0].stop()
        servers.append(start_test_server("streamable-http", "changed_output", port=port))
        assert asyncio.run(_session(proxy + "/mcp", OLD, "client-old")) == (OLD, "HELLO")

    try:
        record_capture(db, servers[0].url, drive)
    finally:
        for server in servers:
            server.stop()
    return db


def test_each_client_is_served_from_the_session_it_matches(two_sessions: Path) -> None:
    log: list[str] = []
    catalog = build_catalog(load_recordings(two_sessions, with_streams=True))
    assert [p.protocol_version for p in catalog.profiles] == [NEW, OLD]
    with MockServer(catalog, timing=FAST, log=log.append).start() as mock:
        # Asked in the opposite order to the recording: the choice is by match, not order.
        assert asyncio.run(_session(mock.mcp_url, OLD, "client-old")) == (OLD, "HELLO")
        assert asyncio.run(_session(mock.mcp_url, NEW, "client-new")) == (NEW, "hello")
        # A client no session recorded (another name, an older version) gets the closest.
        assert asyncio.run(_session(mock.mcp_url, "2025-03-26", "other"))[1] == "hello"
    first, second = catalog.profiles
    assert log[0].startswith(f"client session 1 (client-old, protocol {OLD}) served from "
                             f"recorded session {second.session_id} (protocol {OLD}")
    assert "same protocol version" in log[0] and "same client client-old" in log[0]
    assert f"served from recorded session {first.session_id}" in log[1]
    assert "no recorded session asked for 2025-03-26" in log[2]


def test_session_option_still_pins_one(two_sessions: Path) -> None:
    recordings = load_recordings(two_sessions, with_streams=True)
    pinned = build_catalog(load_recordings(two_sessions, str(recordings[0].session.id),
                                           with_streams=True))
    with MockServer(pinned, timing=FAST).start() as mock:
        assert asyncio.run(_session(mock.mcp_url, OLD, "client-old")) == (NEW, "hello")


def test_choose_profile_weighs_version_then_client_then_capabilities(two_sessions: Path) -> None:
    catalog = build_catalog(load_recordings(two_sessions, with_streams=True))
    first, second = catalog.profiles
    asks = {"protocolVersion": OLD, "clientInfo": {"name": "client-new"}, "capabilities": {}}
    choice = choose_profile(catalog.profiles, asks)
    assert choice is not None and choice.profile is second  # version beats the client name
    choice = choose_profile(catalog.profiles, {**asks, "protocolVersion": "2024-11-05"})
    assert choice is not None and choice.profile is first  # then the name
    assert choose_profile((), asks) is None


def _json_reply(text: str) -> Reply:
    params = {"name": "echo", "arguments": {"text": "hi"}}
    response = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text",
                                                                    "text": text}]}}
    return Reply("tools/call", params, "json", (ScriptItem(0.0, "message", response, RESPONSE),))


async def test_sessionless_requests_are_served_from_the_session_their_meta_matches() -> None:
    """2026-07-28 traffic has no handshake: each request's `_meta` names its version and
    client, and picks the recorded session to answer from."""
    profiles = []
    for number, client in ((1, "alpha"), (2, "beta")):
        reply = _json_reply(f"from {client}")
        profiles.append(SessionProfile(number, "2026-07-28", client, {}, None,
                                       MatchIndex([Candidate("tools/call", reply.params,
                                                             reply)])))
    pooled = MatchIndex([c for p in profiles for c in p.index.candidates])
    catalog = Catalog(pooled, None, (), stateless=True, profiles=tuple(profiles))
    assert catalog.sessionless_choice
    log: list[str] = []
    app = MockApp(catalog, FAST, log.append)

    def request(client: str) -> bytes:
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": client, "version": "1"}}
        return orjson.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                             "params": {"name": "echo", "arguments": {"text": "hi"},
                                        "_meta": meta}})

    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as http:
        headers = {"Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json"}
        texts = []
        for client in ("beta", "alpha", "beta"):
            answer = await http.post("/mcp", content=request(client), headers=headers)
            texts.append(answer.json()["result"]["content"][0]["text"])
    assert texts == ["from beta", "from alpha", "from beta"]
    assert len(log) == 2 and "recorded session 2" in log[0] and "same client beta" in log[0]
