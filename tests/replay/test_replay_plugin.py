"""The pytest plugin: fixtures used directly, and through the installed `pytest11` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from replay_helpers import LENIENT, ROOT, Capture, LiveServer, open_client, text_of

from replay.results import ReplayResult


def test_ssetap_replay_fixture_passes(
    ssetap_replay: Callable[..., ReplayResult], captures: dict[str, Capture],
    server_factory: Callable[..., LiveServer],
) -> None:
    server = server_factory("sse")
    result = ssetap_replay(captures["sse"].db, target=server.mcp_url,
                           latency_threshold=LENIENT)
    assert result.ok and len(result.sessions[0].calls) == 12


async def test_ssetap_mock_fixture_serves_an_sdk_client(
    ssetap_mock: Callable[..., str], captures: dict[str, Capture],
) -> None:
    url = ssetap_mock(captures["streamable-http"].db, timing="fast")
    assert url.endswith("/mcp")
    async with open_client(url, "streamable-http") as session:
        assert text_of(await session.call_tool("echo", {"text": "hello"})) == "hello"
    legacy = ssetap_mock(captures["streamable-http"].db, transport="sse")
    assert legacy.endswith("/sse")


TEST_FILE = '''
import os

def test_regression(ssetap_replay):
    ssetap_replay(os.environ["CAPTURE"], target=os.environ["TARGET"],
                  skip=["tools/call:countdown", "tools/call:slow"],
                  latency_threshold="2x+1s")
'''


def test_plugin_fails_a_test_with_a_readable_diff(
    captures: dict[str, Capture], server_factory: Callable[..., LiveServer], tmp_path: Path,
) -> None:
    """Runs a fresh pytest process, so the fixture comes from the package's entry point."""
    server = server_factory("streamable-http", "changed_output")
    (tmp_path / "test_uses_plugin.py").write_text(TEST_FILE)
    env = dict(os.environ, CAPTURE=str(captures["streamable-http"].db), TARGET=server.mcp_url,
               PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), str(tmp_path)],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "tools/call echo" in out and "DIFFERS" in out
    assert '$.result.content[0].text: expected "hello", got "HELLO"' in out
    assert "FAILED: 10 calls: 9 match, 1 differs" in out, out
    assert "Traceback" not in out  # pytrace=False: the diff is the message
