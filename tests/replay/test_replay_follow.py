"""Replay follows the server like a client: a restart that loses the session is survived."""

from __future__ import annotations

from replay_helpers import LENIENT, Capture, LiveServer, start_test_server

from replay.engine import ReplayOptions, replay_async
from replay.plan import Plan
from replay.results import MATCH, CallResult
from replay.verdict import parse_latency_limit

RESTART_AFTER = 4  # results: initialize, tools/list, echo, add; then the server restarts


async def test_replay_across_a_server_restart_that_loses_the_session(
    captures: dict[str, Capture],
) -> None:
    servers: list[LiveServer] = [start_test_server("streamable-http")]
    port = servers[0].server.port
    seen: list[str] = []

    def on_result(plan: Plan, result: CallResult) -> None:
        seen.append(result.label)
        if len(seen) == RESTART_AFTER:
            # A real restart on the same port: the new process knows no sessions (404).
            servers[-1].stop()
            servers.append(start_test_server("streamable-http", port=port))

    try:
        result = await replay_async(captures["streamable-http"].db, servers[0].mcp_url,
                                    options=ReplayOptions(latency=parse_latency_limit(LENIENT)),
                                    on_result=on_result)
    finally:
        for server in servers:
            server.stop()
    assert len(servers) == 2
    (session,) = result.sessions
    assert [(c.label, c.status) for c in session.calls if c.status != MATCH] == []
    assert len(session.calls) == 12
    assert any("lost the session (HTTP 404) after 4 answered calls" in n and "re-initialized"
               in n for n in session.notes), session.notes
    # The new server saw the recorded handshake again, then the rest of the session.
    posts = [h for h in servers[1].headers_seen if h.get("content-type") == "application/json"]
    assert posts, servers[1].headers_seen
