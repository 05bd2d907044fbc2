"""Imports of what teams already have: a `mitmdump -w` flow file and a `hardump` HAR.

Both are written by a real mitmdump in front of a real `ssetap record` during one real SDK
session; each imports into a capture whose sessions and calls match the recorded one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from recorder.cli import main as ssetap
from recorder.demo_client import run_script
from recorder.demo_server import start_server
from recorder.store import Capture
from tests.conftest import start_recording
from tests.recorder.exporting.compare import sessions_and_calls
from tests.recorder.exporting.mitmdump_chain import Mitmdump

# Plain mitmdump buffers whole responses (no streaming without an addon), so the transports
# whose streams end with their answer are the ones a bare `mitmdump -w` session can carry:
# Streamable HTTP with SSE answers on POST streams, and with JSON answers.
CASES = {
    "streamable-sse": {},
    "streamable-json": {"json_response": True},
}


@pytest.fixture(scope="module", params=list(CASES))
def chain(request, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(recorded capture, mitmdump flow file, mitmdump HAR) of one SDK session."""
    base = tmp_path_factory.mktemp(f"chain-{request.param}")
    server = start_server("streamable-http", ping_interval=0.2, **CASES[request.param])
    try:
        rec = start_recording(base / "recorded.db", server.url)
        dump = Mitmdump(rec.url, base / "session.flows", base / "session.har")
        try:
            summary = asyncio.run(run_script(dump.url + "/mcp", "streamable-http",
                                             log=lambda _: None))
            assert not summary["errors"], summary["errors"]
        finally:
            dump.stop()
            assert rec.stop() == 0, rec.output
    finally:
        server.stop()
    return base / "recorded.db", base / "session.flows", base / "session.har"


def test_mitmdump_flow_file_imports_as_the_recorded_session(chain, tmp_path, capsys):
    recorded, flows, _ = chain
    db = tmp_path / "from-flows.db"
    assert ssetap(["import", str(flows), "--db", str(db)]) == 0
    err = capsys.readouterr().err
    assert "(mitmproxy)" in err and "approximate" in err
    assert sessions_and_calls(db) == sessions_and_calls(recorded)
    with Capture(db) as capture:
        assert capture.meta()["imported_from"] == "mitmproxy:session.flows"


def test_hardump_har_imports_as_the_recorded_session(chain, tmp_path, capsys):
    recorded, _, har = chain
    db = tmp_path / "from-har.db"
    assert ssetap(["import", str(har), "--db", str(db)]) == 0
    assert "approximate" in capsys.readouterr().err
    assert sessions_and_calls(db) == sessions_and_calls(recorded)


def test_imported_capture_serves_every_reader(chain, tmp_path, capsys):
    """sessions, show and check read an imported capture like a recorded one."""
    _, flows, _ = chain
    db = tmp_path / "c.db"
    assert ssetap(["import", str(flows), "--db", str(db)]) == 0
    assert ssetap(["sessions", str(db)]) == 0
    assert ssetap(["show", str(db), "1"]) == 0
    assert ssetap(["check", str(db)]) in (0, 1)
    assert "tools/call" in capsys.readouterr().out


def test_damaged_flow_file_is_one_line(chain, tmp_path, capsys):
    _, flows, _ = chain
    cut = tmp_path / "cut.flows"
    data = flows.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code = ssetap(["import", str(cut), "--db", str(tmp_path / "cut.db")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cut.db").exists()


def test_imported_capture_replays_against_a_live_server(chain, tmp_path, capsys, request):
    """`ssetap replay` takes an imported capture like a recorded one."""
    _, flows, _ = chain
    db = tmp_path / "c.db"
    assert ssetap(["import", str(flows), "--db", str(db)]) == 0
    options = CASES[request.node.callspec.params["chain"]]
    server = start_server("streamable-http", ping_interval=0.2, **options)
    try:
        capsys.readouterr()
        code = ssetap(["replay", str(db), "--target", server.url + "/mcp", "--json", "--quiet"])
        report = orjson.loads(capsys.readouterr().out)
    finally:
        server.stop()
    assert code == 0 and report["ok"], report
    with Capture(db) as capture:
        recorded_calls = sum(len(capture.calls(s["id"])) for s in capture.sessions())
    assert report["summary"]["calls"] == recorded_calls
    assert report["summary"]["match"] + report["summary"].get("slow", 0) == \
        report["summary"]["calls"]


def test_imported_capture_serves_as_a_mock(chain, tmp_path):
    """`ssetap serve`'s mock answers the SDK's client from an imported flow file."""
    from replay.catalog import build_catalog
    from replay.mock_server import MockServer
    from replay.plan import Timing
    from replay.recording import load_recordings

    _, flows, _ = chain
    db = tmp_path / "c.db"
    assert ssetap(["import", str(flows), "--db", str(db)]) == 0
    mock = MockServer(build_catalog(load_recordings(db, with_streams=True)),
                      timing=Timing(None)).start()
    try:
        summary = asyncio.run(run_script(mock.mcp_url, "streamable-http", log=lambda _: None))
    finally:
        mock.stop()
    assert not summary["errors"], summary["errors"]
