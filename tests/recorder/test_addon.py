"""The addon through mitmproxy's own test helpers, and under plain `mitmdump -s`."""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from recorder.addon import Recorder

ROOT = Path(__file__).resolve().parents[2]
CHUNKS = [b"event: endpoint\r\ndata: /messages/?session_id=" + b"e" * 32 + b"\r\n\r\n",
          b": ping - 2025-06-01 12:34:56.789012+00:00\r", b"\n\r\n",
          b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message"}\r\n\r\n']


def _sse_response(addon: Recorder) -> tuple[http.HTTPFlow, Any]:
    """A GET /sse whose event-stream response the addon has started tapping."""
    flow = tflow.tflow(req=tutils.treq(method=b"GET", path=b"/sse"))
    addon.request(flow)
    flow.response = tutils.tresp(headers=[(b"content-type", b"text/event-stream")],
                                 content=None)
    addon.responseheaders(flow)
    return flow, flow.response.stream


def test_tap_forwards_bytes_unchanged_and_records_them(tmp_path):
    db = tmp_path / "c.db"
    addon = Recorder()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ssetap_db=str(db))
        flow, tap = _sse_response(addon)
        assert callable(tap)
        assert [tap(c) for c in CHUNKS] == CHUNKS  # identity: the client gets the same bytes
        assert tap(b"") == b""
        addon.response(flow)
        addon.done()
    conn = sqlite3.connect(db)
    kinds = [k for (k,) in conn.execute("SELECT kind FROM sse_events ORDER BY id")]
    assert kinds == ["event", "comment", "event"]
    (chunks,) = conn.execute("SELECT count(*) FROM chunks").fetchone()
    assert chunks == len(CHUNKS)
    assert conn.execute("SELECT transport FROM sessions").fetchall() == [("sse",)]


def test_bad_option_is_refused(tmp_path):
    addon = Recorder()
    with taddons.context(addon) as tctx:
        try:
            tctx.configure(addon, ssetap_db=str(tmp_path))
        except Exception as exc:  # mitmproxy wraps OptionsError
            assert "directory" in str(exc)
        else:
            raise AssertionError("a directory was accepted as a capture file")


def test_plain_mitmdump_with_the_addon_script(tmp_path, mcp_server):
    mitmdump = shutil.which("mitmdump", path=str(Path(sys.executable).parent))
    assert mitmdump, "mitmdump is installed with the project"
    server = mcp_server("streamable-http")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "c.db"
    proc = subprocess.Popen([mitmdump, "-q", "-s", str(ROOT / "recorder" / "addon.py"),
                             "--set", f"ssetap_db={db}", "--mode", f"reverse:{server.url}",
                             "--listen-host", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "plain", "version": "1"}}}
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, headers={
                    "Accept": "application/json, text/event-stream"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "mitmdump did not start"
                time.sleep(0.2)
        assert reply.status_code == 200 and "serverInfo" in reply.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT client_name, server_name FROM sessions").fetchall() == [
        ("plain", "ssetap-demo")]
    assert conn.execute("SELECT method, outcome FROM calls").fetchall() == [("initialize", "result")]


def test_chunks_tapped_after_the_link_stopped_taking_facts_are_a_stopped_gap(tmp_path):
    """What a tap forwards after the sender's last look is counted as shed (`stopped`), so
    recorded + shed = sent holds for a stream still open when the recording stops."""
    db = tmp_path / "c.db"
    addon = Recorder()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ssetap_db=str(db))
        flow, tap = _sse_response(addon)
        for chunk in CHUNKS[:2]:
            tap(chunk)
        link = addon.link
        assert link is not None
        deadline = time.monotonic() + 10
        while link.queue or link._held or link._out:  # shipped to the worker
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # The sender stops (its deadlines passed) ...
        link._hard_deadline = 0.0
        link._stop.set()
        link._thread.join(10)
        assert not link._thread.is_alive()
        # ... while the stream goes on: these bytes were forwarded after its last look.
        late = CHUNKS[2:]
        assert [tap(c) for c in late] == late
        addon.stop()
    assert addon.outcome is not None and not addon.outcome.complete
    conn = sqlite3.connect(db)
    (recorded,) = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM chunks").fetchone()
    gaps = conn.execute("SELECT reason, bytes, events FROM capture_gaps").fetchall()
    # Two blank lines end SSE blocks in the late bytes: the ping comment's and the event's.
    assert gaps == [("stopped", sum(map(len, late)), 2)]
    assert recorded + gaps[0][1] == sum(map(len, CHUNKS))
