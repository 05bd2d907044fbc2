"""Redaction applied again on export: a raw capture's secrets do not leave it unless asked."""

from __future__ import annotations

import pytest

from recorder.cli import main as ssetap
from recorder.store import Capture
from tests.recorder.exporting.conftest import record_session


@pytest.fixture(scope="module")
def raw_capture(tmp_path_factory):
    db = tmp_path_factory.mktemp("raw") / "raw.db"
    # Legacy SSE: its session id (in the endpoint URL) exists in both SDK generations.
    record_session(db, "legacy-sse", "--raw")
    with Capture(db) as capture:
        (session,) = capture.sessions()
    secret = session["key"].partition(":")[2]  # the real session id, stored raw
    assert len(secret) >= 16
    return db, secret


@pytest.mark.parametrize("fmt", ["jsonl", "har", "otlp"])
def test_raw_capture_is_redacted_on_export(raw_capture, fmt, tmp_path):
    db, secret = raw_capture
    out = tmp_path / f"x.{fmt}"
    assert ssetap(["export", str(db), "--format", fmt, "-o", str(out)]) == 0
    data = out.read_bytes()
    assert secret.encode() not in data
    assert b"mcp" in data.lower()  # the rest is there
    raw = tmp_path / f"raw.{fmt}"
    assert ssetap(["export", str(db), "--format", fmt, "--raw", "-o", str(raw)]) == 0
    assert secret.encode() in raw.read_bytes()


def test_redacted_jsonl_of_a_raw_capture_still_imports_whole(raw_capture, tmp_path, capsys):
    db, secret = raw_capture
    out = tmp_path / "x.jsonl"
    assert ssetap(["export", str(db), "--format", "jsonl", "-o", str(out)]) == 0
    restored = tmp_path / "r.db"
    assert ssetap(["import", str(out), "--db", str(restored)]) == 0
    with Capture(db) as a, Capture(restored) as b:
        assert a.counts() == b.counts()
        (sa,), (sb,) = a.sessions(), b.sessions()
        assert sb["key"] != sa["key"] and len(sb["key"]) == len(sa["key"])
        assert b.meta()["redaction"].startswith("hmac-sha256")
        assert [c["method"] for c in a.calls(sa["id"])] == [c["method"] for c in b.calls(sb["id"])]
