"""End to end: `ssetap record --fault` in front of the official SDK's servers and clients.

For each fault: what the real client experienced, and that `ssetap check` raises exactly the
expected flag kind, marked injected, and nothing else of warning or error severity.
Intervals are short (0.2 s heartbeats, 1.5 s request deadline) and margins wide.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.recorder.capture_query import q
from tests.recorder.fault_helpers import call, check, flags, run_client, serious

pytestmark = pytest.mark.timeout(120)

TRANSPORTS = [pytest.param("sse", "/sse", id="legacy-sse"),
              pytest.param("streamable-http", "/mcp", id="streamable-http")]


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_error_answers_matching_calls_with_the_code(record, mcp_server, transport, path):
    server = mcp_server(transport, ping_interval=0.2)
    rec = record(server.url, "--fault", "error=tools/call:ech*:-32603")

    async def scenario(session):
        return [await call(session, "echo", {"text": "hi"}),
                await call(session, "add", {"a": 1, "b": 2})]

    seen = run_client(rec.url + path, transport, scenario)
    assert rec.stop() == 0
    assert seen == [("error", -32603), ("result", "3")]  # only the matching call
    rows = q(rec.db, "SELECT kind, action, spec FROM injections")
    assert rows and {r[:2] for r in rows} == {("error", "replaced-response" if transport == "sse"
                                                else "error")}
    code, report = check(rec.db)
    assert code == 0
    found = [f for f in flags(report) if f["kind"] == "error-response"]
    assert len(found) == 1 and found[0]["injected"], found
    assert found[0]["details"]["injected"]["spec"] == "error=tools/call:ech*:-32603"
    assert serious(report) == []


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_hang_leaves_the_call_unanswered(record, mcp_server, transport, path):
    server = mcp_server(transport, ping_interval=0.2)
    rec = record(server.url, "--fault", "hang=tools/call:echo", "--request-timeout", "1.5s")

    async def scenario(session):
        return [await call(session, "echo", {"text": "hi"}),
                await call(session, "add", {"a": 1, "b": 2})]

    # The SDK client gives up after its read timeout (3 s) and carries on.
    seen = run_client(rec.url + path, transport, scenario, timeout=3.0)
    assert rec.stop() == 0
    assert seen == [("timeout", None), ("result", "3")]
    code, report = check(rec.db, "--request-timeout", "1.5s")
    assert serious(report) == [("request-timeout", True)]
    assert code == 0  # injected faults do not fail the check ...
    code, _ = check(rec.db, "--request-timeout", "1.5s", "--include-injected")
    assert code == 1  # ... unless asked


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_drop_heartbeats_after_a_while(record, mcp_server, transport, path):
    server = mcp_server(transport, ping_interval=0.2)
    rec = record(server.url, "--fault", "drop-heartbeats", "--fault-after", "1.5s")

    async def scenario(session):
        await asyncio.sleep(4.0)  # the cadence is learned, then the pings stop arriving
        return await call(session, "add", {"a": 1, "b": 2})

    assert run_client(rec.url + path, transport, scenario) == ("result", "3")
    assert rec.stop() == 0
    dropped = q(rec.db, "SELECT count(*) FROM injections WHERE action = 'dropped-comment'")
    assert dropped[0][0] >= 5
    # The client got no comment after the fault began.
    first = q(rec.db, "SELECT min(t) FROM injections")[0][0]
    assert q(rec.db, "SELECT count(*) FROM sse_events WHERE kind = 'comment' AND t > ?",
             first + 0.05) == [(0,)]
    _, report = check(rec.db)
    assert serious(report) == [("heartbeat-missing", True)]


def test_without_fault_no_injections_table_rows(record, mcp_server):
    server = mcp_server("streamable-http", ping_interval=0.2)
    rec = record(server.url)

    async def scenario(session):
        return await call(session, "echo", {"text": "hi"})

    assert run_client(rec.url + "/mcp", "streamable-http", scenario) == ("result", "hi")
    assert rec.stop() == 0
    assert q(rec.db, "SELECT count(*) FROM injections") == [(0,)]
