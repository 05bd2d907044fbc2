"""The secrets corpus sent by an mcp>=2 client to an mcp>=2 server through `ssetap record`:
credential headers, cookies, value shapes and token query parameters, echoed back in SSE data.

mcp 2 runs from an interpreter that has it: this one when it does (Python 3.13 CI), else
$SSETAP_MCP2_PYTHON or the venv `.ci/run` provisions (mcp 2 cannot share a venv with
mitmproxy 11 on Python 3.11).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.recorder.capture_query import q
from tests.recorder.secrets_corpus import Corpus, leaks

PEER = Path(__file__).parent / "peers" / "mcp2_secrets_peer.py"
DEFAULT = Path.home() / ".cache" / "ssetap" / "mcp2-venv" / "bin" / "python"


def _mcp2_python() -> str:
    if importlib.util.find_spec("mcp.server.mcpserver") is not None:
        return sys.executable
    return os.environ.get("SSETAP_MCP2_PYTHON") or (str(DEFAULT) if DEFAULT.exists() else "")


PYTHON = _mcp2_python()
pytestmark = pytest.mark.skipif(
    not PYTHON, reason="no interpreter with mcp>=2 (set SSETAP_MCP2_PYTHON or run .ci/run)")


@pytest.fixture
def mcp2_secrets_server() -> Iterator[str]:
    proc = subprocess.Popen([PYTHON, str(PEER), "server"], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        proc.kill()
        proc.wait()


def test_no_secret_an_mcp2_client_sends_reaches_any_file(record, mcp2_secrets_server,
                                                         tmp_path: Path) -> None:
    corpus = Corpus.build()
    corpus.headers["Authorization"] = "Bearer " + corpus.query["jwt"][::-1]
    corpus.secrets["header Authorization"] = corpus.query["jwt"][::-1]
    db = tmp_path / "capture" / "capture.db"
    db.parent.mkdir()
    rec = record(mcp2_secrets_server, db=db)
    payload = {"headers": corpus.headers, "query": corpus.query, "echo": corpus.headers["X-Auth"]}
    out = subprocess.run([PYTHON, str(PEER), "client", rec.url + "/mcp"], text=True,
                         input=orjson.dumps(payload).decode(), capture_output=True, timeout=60)
    assert out.stdout.startswith("OK True plain words stay"), out.stderr[-2000:]
    assert rec.stop() == 0
    assert leaks(db.parent, corpus) == {}
    calls = q(db, "SELECT method, outcome FROM calls WHERE method = 'tools/call'")
    assert calls == [("tools/call", "result")] * 2
    assert q(db, "SELECT count(*) FROM messages WHERE json LIKE '%plain words stay%'")[0][0] == 2
