"""Shared fixtures: a real `ssetap record` subprocess, real SDK servers, a raw-bytes server.

Everything runs on 127.0.0.1 with ephemeral ports; every process and server is stopped at
teardown, whatever the test did.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (http://\S+?)(?: |;|$)")


@dataclass
class Recording:
    """A running `ssetap record` process and what it printed."""

    proc: subprocess.Popen[str]
    db: Path
    url: str = ""
    lines: list[str] = field(default_factory=list)
    returncode: int | None = None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
        return self.returncode

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def start_recording(db: Path, upstream: str | None, *args: str, timeout: float = 20.0,
                    new_session: bool = False) -> Recording:
    """Start `ssetap record` on an ephemeral port and wait until it listens (in a process group
    of its own with `new_session`, for tests that kill the whole group)."""
    cmd = [sys.executable, "-m", "recorder.cli", "record", "--listen", "127.0.0.1:0",
           "--db", str(db), *args]
    if upstream is not None:
        cmd[4:4] = ["--upstream", upstream]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env, cwd=ROOT, start_new_session=new_session)
    rec = Recording(proc, db)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            rec.lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not rec.url:
                rec.url = match.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or not rec.url:
        rec.stop(signal.SIGKILL)
        raise RuntimeError(f"ssetap record did not start: {rec.output}")
    return rec


@pytest.fixture
def record(tmp_path: Path) -> Iterator[Callable[..., Recording]]:
    """Factory: `record(upstream_url, *extra_args, db=None)` -> a running Recording."""
    started: list[Recording] = []

    def factory(upstream: str | None, *args: str, db: Path | None = None) -> Recording:
        rec = start_recording(db or tmp_path / f"capture{len(started)}.db", upstream, *args)
        started.append(rec)
        return rec

    yield factory
    for rec in started:
        rec.stop()


@pytest.fixture
def mcp_server() -> Iterator[Callable[..., Any]]:
    """Factory: `mcp_server(transport, **options)` -> a running demo ServerHandle."""
    from recorder.demo_server import start_server

    handles: list[Any] = []

    def factory(transport: str, **options: Any) -> Any:
        handle = start_server(transport, **options)  # type: ignore[arg-type]
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.stop()


# --- A raw HTTP/1.1 server for bytes the SDKs never send ------------------------------------

Responder = Callable[[str, str, dict[str, str], bytes, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """An asyncio HTTP/1.1 server in a thread; `responder` writes whatever bytes it likes."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._started.set()
        self.loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self.responder(method, path, headers, body, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture
def raw_server() -> Iterator[Callable[[Responder], RawServer]]:
    servers: list[RawServer] = []

    def factory(responder: Responder) -> RawServer:
        server = RawServer(responder)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")
