"""The 2026-07-28 revision (mcp>=2: `server/discover`, no sessions): replayed and served.

mcp 2 runs from another interpreter ($SSETAP_MCP2_PYTHON, or the venv `.ci/run` provisions),
like tests/recorder/test_mcp2_e2e.py, whose peer script this reuses.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from recording_helpers import LENIENT, ROOT, record_capture

from replay.engine import ReplayOptions, replay_async
from replay.mock_server import serve_capture
from replay.plan import FAST
from replay.verdict import parse_latency_limit
from tests.sdk_peers import mcp2_python

PEER = ROOT / "tests" / "recorder" / "peers" / "mcp2_peer.py"
PYTHON = mcp2_python()

pytestmark = pytest.mark.skipif(
    not PYTHON, reason="no interpreter with mcp>=2 (set SSETAP_MCP2_PYTHON or run .ci/run)")


@pytest.fixture
def mcp2_server() -> Iterator[str]:
    proc = subprocess.Popen([PYTHON, str(PEER), "server", "streamable-http"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        proc.kill()
        proc.wait()


def _client(url: str) -> str:
    proc = subprocess.run([PYTHON, str(PEER), "client", url], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


async def test_2026_capture_replays_and_serves(mcp2_server: str, tmp_path: Path) -> None:
    db = tmp_path / "mcp2.db"
    outputs: list[str] = []
    record_capture(db, mcp2_server, lambda proxy: outputs.append(_client(proxy + "/mcp")))
    assert outputs == ["OK ['add', 'countdown'] 5 liftoff 3"]

    result = await replay_async(db, mcp2_server + "/mcp", options=ReplayOptions(
        latency=parse_latency_limit(LENIENT)))
    assert result.ok, result
    labels = [c.label for c in result.sessions[0].calls]
    assert labels == ["server/discover", "tools/list", "tools/call add", "tools/call countdown"]

    mock = serve_capture(str(db), timing=FAST)
    try:
        assert _client(mock.mcp_url) == "OK ['add', 'countdown'] 5 liftoff 3"
    finally:
        mock.stop()
