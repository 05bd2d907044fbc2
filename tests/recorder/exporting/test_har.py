"""HAR export of real recordings, read back by a HAR library from PyPI, and imported again."""

from __future__ import annotations

import os
import stat

import orjson
import pytest
from haralyzer import HarParser

from recorder.cli import main as ssetap
from recorder.store import Capture
from tests.recorder.exporting.compare import sessions_and_calls
from tests.recorder.exporting.conftest import TRANSPORTS


@pytest.mark.parametrize("name", list(TRANSPORTS))
def test_har_holds_every_exchange_and_sse_event(recorded, name, tmp_path):
    db = recorded(name)
    har = tmp_path / "capture.har"
    assert ssetap(["export", str(db), "--format", "har", "-o", str(har)]) == 0
    assert stat.S_IMODE(os.stat(har).st_mode) == 0o600
    parser = HarParser.from_file(str(har))
    assert parser.har_data["version"] == "1.2"
    entries = [e for page in parser.pages for e in page.entries]
    with Capture(db) as capture:
        exchanges = [x for s in [None, *[s["id"] for s in capture.sessions()]]
                     for x in capture.exchanges(s)]
        assert len(entries) == len(exchanges) == capture.counts()["exchanges"]
        by_id = {e.raw_entry["_ssetap"]["exchange"]: e for e in entries}
        sse_total = 0
        for exchange in exchanges:
            entry = by_id[exchange["id"]]
            assert entry.request.method == exchange["method"]
            assert entry.request.url == exchange["url"]
            assert entry.response.status == exchange["status"]
            assert entry.startTime.timestamp() == pytest.approx(exchange["started_at"], abs=1e-6)
            assert entry.timings["wait"] == pytest.approx(
                (exchange["response_at"] - exchange["started_at"]) * 1000, abs=0.01)
            streams = [s for s in capture.streams(exchange["session_id"])
                       if s["exchange_id"] == exchange["id"]] if exchange["session_id"] else []
            if not streams:
                assert "_sseEvents" not in entry.raw_entry
                continue
            events = capture.sse_events(streams[0]["id"])
            sse = entry.raw_entry["_sseEvents"]
            assert [(e["time"], e["type"], e.get("id"), e.get("data")) for e in sse] == \
                [(e["t"], e["kind"], e["event_id"], e["data"]) for e in events]
            # Offsets point into the HAR body: each event's bytes are where it says.
            body = entry.response.text.encode()
            for item in sse:
                if item["type"] == "event" and item.get("event") == "message":
                    assert item["data"].encode() in body[item["start"]:item["end"]]
            sse_total += len(sse)
        assert sse_total == capture.counts()["sse_events"]
        # MCP messages are linked: each call's request and answer carry the same call number.
        linked = [m for e in entries for m in e.raw_entry.get("_mcpMessages", [])]
        assert len(linked) == capture.counts()["messages"]
        calls = {}
        for m in sorted(linked, key=lambda m: m["time"]):  # legacy answers ride the GET entry
            if m["call"] is not None and m["kind"] in ("request", "result", "error"):
                calls.setdefault(m["call"], []).append(m["kind"])
        assert all(kinds[0] == "request" and len(kinds) == 2 for kinds in calls.values()), calls


@pytest.mark.parametrize("name", list(TRANSPORTS))
def test_ssetap_har_imports_as_the_recorded_session(recorded, name, tmp_path, capsys):
    db = recorded(name)
    har = tmp_path / "capture.har"
    assert ssetap(["export", str(db), "--format", "har", "-o", str(har)]) == 0
    imported = tmp_path / "imported.db"
    capsys.readouterr()
    assert ssetap(["import", str(har), "--db", str(imported)]) == 0
    assert "(har)" in capsys.readouterr().err
    assert sessions_and_calls(imported) == sessions_and_calls(db)
    # ssetap's own HAR keeps SSE event and message times exact (microseconds).
    with Capture(db) as a, Capture(imported) as b:
        ta = [m["t"] for s in a.sessions() for m in a.messages(s["id"])]
        tb = [m["t"] for s in b.sessions() for m in b.messages(s["id"])]
        assert tb == pytest.approx(ta, abs=2e-6)


def test_har_import_rejects_damaged_files(tmp_path, capsys):
    bad = tmp_path / "bad.har"
    bad.write_bytes(orjson.dumps({"log": {"version": "1.2", "entries": [{"request": {}}]}}))
    assert ssetap(["import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "entry 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.db").exists()
    truncated = tmp_path / "cut.har"
    truncated.write_bytes(b'{"log": {"version": "1.2", "entries": [')
    assert ssetap(["import", str(truncated)]) == 2
    assert "not a HAR file" in capsys.readouterr().err


@pytest.mark.parametrize(("pieces", "expected"), [
    ([b"data: caf\xc3", b"\xa9\n\n"], {"size": 13, "mimeType": "text/event-stream",
                                       "text": "data: café\n\n"}),  # a character split in two
    ([b"\xff\xfe", b"\x00"], {"size": 3, "mimeType": "text/event-stream", "text": "//4A",
                              "encoding": "base64"}),
    ([], {"size": 0, "mimeType": "text/event-stream", "text": ""}),
])
def test_streamed_content_is_exact_text_or_base64(pieces, expected):
    import io

    from recorder.exporting.har import _write_stream_content

    out = io.BytesIO()
    _write_stream_content(out, lambda: iter(pieces), "text/event-stream")
    assert orjson.loads(out.getvalue()) == expected
