"""The checked-in sample captures are real, complete and readable by this ssetap."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.store import Capture

SAMPLES = sorted((Path(__file__).resolve().parent.parent / "sample_captures").glob("*.db"))


def test_there_is_one_capture_per_transport_mode():
    assert {p.name for p in SAMPLES} == {"legacy-sse.db", "streamable-sse.db",
                                         "streamable-json.db", "streamable-stateless.db"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_capture_is_a_whole_sdk_session(path):
    with Capture(path) as capture:
        (session,) = capture.sessions()
        assert session["client_name"] == "mcp" and session["server_name"] == "ssetap-demo"
        assert session["requests"] == session["answered"] == 13 and session["pending"] == 0
        streams = capture.streams(session["id"])
        chunks = [c for s in streams for c in capture.chunks(s["id"])]
        if "json" not in path.stem:
            assert chunks and all(c["t"] >= session["started_at"] for c in chunks)
        if path.stem in ("legacy-sse", "streamable-sse"):
            comments = sum(s["comments"] for s in streams)
            assert comments >= 1  # heartbeats recorded
        assert not (path.parent / f"{path.name}.key").exists()
