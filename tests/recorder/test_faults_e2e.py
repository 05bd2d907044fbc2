"""End to end: `ssetap record --fault` in front of the official SDK's servers and clients.

For each fault: what the real client experienced, and that `ssetap check` raises exactly the
expected flag kind, marked injected, and nothing else of warning or error severity.
Intervals are short (0.2 s heartbeats, 1.5 s request deadline) and margins wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import io

import orjson
import pytest

from recorder.cli import main as ssetap
from tests.recorder.capture_query import q
from tests.recorder.fault_helpers import LOST_CALL, call, check, flags, run_client, serious

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
    # Live: the flag row and the console line say it was injected.
    live = q(rec.db, "SELECT details FROM flags WHERE source = 'live' AND kind = ?",
             "request-timeout")
    assert len(live) == 1
    assert orjson.loads(live[0][0])["injected"]["spec"] == "hang=tools/call:echo"
    assert "request-timeout" in rec.output and "[injected: hang=tools/call:echo]" in rec.output
    code, report = check(rec.db, "--request-timeout", "1.5s")
    assert serious(report) == [("request-timeout", True)]
    assert code == 0  # injected faults do not fail the check ...
    code, _ = check(rec.db, "--request-timeout", "1.5s", "--include-injected")
    assert code == 1  # ... unless asked
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert ssetap(["check", str(rec.db), "--no-store", "--request-timeout", "1.5s"]) == 0
    text = out.getvalue()
    assert "request-timeout" in text and "[injected: hang=tools/call:echo]" in text
    assert "0 flags at or above error (1 injected, not counted: --include-injected)" in text


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


CHECK = {"idle_timeouts": [1.0], "idle_tolerance": 0.15, "burst_gap": 1.0,
         "resume_grace": 0.5, "session_recover_grace": 1.0}


def _config(tmp_path):
    path = tmp_path / "check.json"
    path.write_bytes(orjson.dumps(CHECK))
    return str(path)


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_cut_stream_truncates_a_response_stream(record, mcp_server, transport, path, tmp_path):
    server = mcp_server(transport, ping_interval=0.2)
    rec = record(server.url, "--fault", "cut-stream=3", "--check-config", _config(tmp_path))
    progress: list[float] = []

    async def scenario(session):
        return await call(session, "countdown", {"n": 5}, progress)

    try:
        seen = run_client(rec.url + path, transport, scenario, timeout=3.0)
    except Exception as exc:  # the legacy client's session dies with its stream
        seen = ("broken", type(exc).__name__)
    assert rec.stop() == 0
    print("cut-stream: the client saw", seen, "after progress", progress)
    if transport == "sse":
        # The session stream carries everything: endpoint, initialize's result, the log
        # message, then the cut. SDK v1's legacy client does not reconnect: the pending call
        # fails with "Connection closed" (-32000).
        assert seen == ("error", -32000) and progress == [], (seen, progress)
    else:
        # The POST stream: a log message, two progress notifications, then the cut. There is
        # no event id to resume with (the SDK server keeps no event store): the call is lost
        # (SDK v1 times out, v2 fails it with "Connection closed").
        assert seen[0] == LOST_CALL[0] and progress == [1.0, 2.0], (seen, progress)
    assert q(rec.db, "SELECT action FROM injections") == [("cut",)]
    _, report = check(rec.db, "--config", _config(tmp_path))
    assert serious(report) == [("stream-truncated", True)]


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_session_lost_gets_404_and_the_client_does_not_recover(record, mcp_server, transport, path, tmp_path):
    server = mcp_server(transport, ping_interval=0.2)
    rec = record(server.url, "--fault", "session-lost=1s", "--check-config", _config(tmp_path))

    async def scenario(session):
        first = await call(session, "add", {"a": 1, "b": 2})
        await asyncio.sleep(1.5)
        second = await call(session, "add", {"a": 2, "b": 2})
        await asyncio.sleep(1.5)  # past the recovery grace
        return [first, second]

    seen = run_client(rec.url + path, transport, scenario, timeout=3.0)
    assert rec.stop() == 0
    assert seen[0] == ("result", "3") and seen[1][0] in ("error", "timeout"), seen
    assert ("404",) in q(rec.db, "SELECT DISTINCT action FROM injections")
    _, report = check(rec.db, "--config", _config(tmp_path))
    kinds = serious(report)
    print("session-lost: the client saw", seen, "flags", kinds,
          q(rec.db, "SELECT method, status FROM exchanges ORDER BY id"))
    assert ("session-not-found", True) in kinds
    assert all(injected for _, injected in kinds), kinds
    assert {k for k, _ in kinds} <= {"session-not-found", "reinit-missing"}


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_delay_makes_a_call_slow_past_the_deadline(record, mcp_server, transport, path):
    server = mcp_server(transport, ping_interval=0.2)
    rec = record(server.url, "--fault", "delay=tools/call:add:2.5s", "--request-timeout", "1s")

    async def scenario(session):
        return await call(session, "add", {"a": 1, "b": 2})

    assert run_client(rec.url + path, transport, scenario) == ("result", "3")
    assert rec.stop() == 0
    latency = q(rec.db, "SELECT latency_ms FROM calls WHERE name = 'add'")[0][0]
    assert latency >= 2400
    _, report = check(rec.db, "--request-timeout", "1s")
    kinds = serious(report)
    assert kinds and all(injected for _, injected in kinds), kinds
    assert {k for k, _ in kinds} == {"request-timeout"}


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_idle_cut_closes_a_quiet_stream(record, mcp_server, transport, path, tmp_path):
    server = mcp_server(transport, ping_interval=0)  # no heartbeats: the GET is quiet
    # No idle_timeouts in the config: the injected deadline (1 s) is learned from the fault.
    config = tmp_path / "idle.json"
    config.write_bytes(orjson.dumps({"idle_tolerance": 0.15}))
    rec = record(server.url, "--fault", "idle-cut=1s", "--check-config", str(config))

    async def scenario(session):
        await asyncio.sleep(3.5)
        return await call(session, "add", {"a": 1, "b": 2})

    try:
        seen = run_client(rec.url + path, transport, scenario, timeout=3.0)
    except Exception as exc:  # the legacy client's session dies with its stream
        seen = ("broken", type(exc).__name__)
    assert rec.stop() == 0
    cuts = q(rec.db, "SELECT count(*) FROM injections WHERE action = 'idle-cut'")[0][0]
    gets = q(rec.db, "SELECT count(*) FROM exchanges WHERE method = 'GET'")[0][0]
    if transport == "sse":
        # The legacy client does not reconnect: the session is gone with its stream (SDK v1's
        # session breaks; v2's fails the next call with "Connection closed").
        assert seen[0] in ("broken", LOST_CALL[0]) and cuts == 1 and gets == 1, (seen, cuts, gets)
    else:
        # The Streamable HTTP client reopens its GET stream after each cut; POSTs still work.
        assert seen == ("result", "3") and cuts >= 2 and gets >= 2, (seen, cuts, gets)
    live = q(rec.db, "SELECT details FROM flags WHERE source = 'live' AND kind = ?",
             "idle-timeout-close")
    assert live and all(orjson.loads(d)["injected"]["spec"] == "idle-cut=1s" for (d,) in live)
    _, report = check(rec.db, "--config", str(config))
    kinds = serious(report)
    assert ("idle-timeout-close", True) in kinds
    assert all(injected for _, injected in kinds), kinds


@pytest.mark.parametrize(("transport", "path"), TRANSPORTS)
def test_buffer_releases_bursts(record, mcp_server, transport, path, tmp_path):
    server = mcp_server(transport, ping_interval=0.2)
    rec = record(server.url, "--fault", "buffer=1.5s", "--check-config", _config(tmp_path))

    async def scenario(session):
        await asyncio.sleep(4.0)
        return await call(session, "add", {"a": 1, "b": 2})

    assert run_client(rec.url + path, transport, scenario) == ("result", "3")
    assert rec.stop() == 0
    assert q(rec.db, "SELECT count(*) FROM injections WHERE action = 'released'")[0][0] >= 2
    _, report = check(rec.db, "--config", _config(tmp_path))
    assert serious(report) == [("buffered-stream", True)]


def test_fault_sessions_limits_faults_to_the_first_sessions(record, mcp_server):
    server = mcp_server("streamable-http", ping_interval=0.2)
    rec = record(server.url, "--fault", "error=tools/call:*:-32000", "--fault-sessions", "1")

    async def scenario(session):
        return await call(session, "add", {"a": 1, "b": 2})

    first = run_client(rec.url + "/mcp", "streamable-http", scenario)
    second = run_client(rec.url + "/mcp", "streamable-http", scenario)
    assert rec.stop() == 0
    assert (first, second) == (("error", -32000), ("result", "3"))
    assert q(rec.db, "SELECT DISTINCT i.session_id FROM injections i") == [(1,)]


def test_bad_fault_options_fail_before_anything_starts(tmp_path, capsys):
    from recorder.cli import main

    db = tmp_path / "never.db"
    for args in (["--fault", "cut-stream=-1"], ["--fault-after", "2s"],
                 ["--fault", "drop-heartbeats", "--fault-every", "soon"]):
        assert main(["record", "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0",
                     "--db", str(db), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ssetap: error: --fault"), err
    assert not db.exists()
