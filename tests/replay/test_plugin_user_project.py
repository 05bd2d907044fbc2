"""The pytest plugin in a user's own project, on the SDK people run today (mcp 2).

A small project directory is written the way a user would write it: their own MCPServer, a
conftest that starts it, and tests that use `ssetap_replay` and `ssetap_mock`. Plain `pytest` runs
there in a fresh process with no path to this checkout, so the fixtures come from the installed
`pytest11` entry point, exactly as users get them. A capture of the server is recorded first
through a real `ssetap record`; then the suite must pass against the unchanged server and fail,
naming the difference, against a changed one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from recording_helpers import record_capture

from tests.sdk_peers import GENERATION

pytestmark = pytest.mark.skipif(
    GENERATION < 2, reason="a user project on mcp 2 runs in the Python 3.12+ venv, where mcp 2 "
    "and ssetap share one environment")

SERVER = '''
"""The user's own MCP server (mcp 2)."""
import os
import socket

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("user-server", version="1.0.0")


@server.tool()
def greet(name: str) -> str:
    """Greet someone by name."""
    greeting = "Hi" if os.environ.get("GREETING_CHANGED") else "Hello"
    return f"{greeting} {name}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print("PORT", sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="warning")).run(
        sockets=[sock])
'''

CONFTEST = '''
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def live_server():
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "server.py")],
                            stdout=subprocess.PIPE, text=True)
    port = proc.stdout.readline().split()[1]
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()
'''

TESTS = '''
import asyncio
import os

from mcp import Client

CAPTURE = os.environ["CAPTURE"]


def test_server_still_answers_as_recorded(ssetap_replay, live_server):
    ssetap_replay(CAPTURE, target=live_server, latency_threshold="2x+1s")


def test_mock_answers_as_the_recorded_server(ssetap_mock):
    url = ssetap_mock(CAPTURE, timing="fast")

    async def call():
        async with Client(url) as client:
            result = await client.call_tool("greet", {"name": "Ada"})
            return result.content[0].text

    assert asyncio.run(call()) == "Hello Ada"
'''


def _start_server(project: Path, **env: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(project / "server.py")], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, **env))
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{proc.stdout.readline().split()[1]}"
    finally:
        proc.kill()
        proc.wait()


def _drive(url: str) -> None:
    from mcp import Client

    async def script() -> None:
        async with Client(url) as client:
            await client.list_tools()
            await client.call_tool("greet", {"name": "Ada"})
            await client.call_tool("add", {"a": 2, "b": 3})

    asyncio.run(script())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "user-project"
    root.mkdir()
    (root / "server.py").write_text(textwrap.dedent(SERVER))
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (root / "test_regression.py").write_text(textwrap.dedent(TESTS))
    capture = root / "fixtures" / "greet.db"
    capture.parent.mkdir()
    for upstream in _start_server(root):
        record_capture(capture, upstream, lambda proxy: _drive(proxy + "/mcp"))
    return root


def _pytest(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    clean.update(CAPTURE=str(project / "fixtures" / "greet.db"), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(project), str(project)],
                          capture_output=True, text=True, env=clean, cwd=project, timeout=180,
                          check=False)


def test_user_project_passes_against_the_unchanged_server(project: Path) -> None:
    proc = _pytest(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_user_project_fails_naming_the_difference(project: Path) -> None:
    proc = _pytest(project, GREETING_CHANGED="1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in proc.stdout, out
    assert "test_server_still_answers_as_recorded" in out
    assert "Hello Ada" in out and "Hi Ada" in out, out
