"""Helpers for the recording-under-pressure tests: a fast SSE producer, a counting client,
process facts from /proc, and the capture's recorded-versus-shed sums."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from recorder.wire import sse_terminators

ROOT = Path(__file__).resolve().parents[2]


class SseProducer:
    """`bench/sse_server.py` in a subprocess (the benchmark's producer, ~150-byte events)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sse_server.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class StreamClient:
    """Reads one SSE stream through the proxy in a thread, as fast as it comes, counting the
    body's bytes and events (chunked transfer decoded)."""

    proxy_url: str
    query: str
    body_bytes: int = 0
    events: int = 0
    done: bool = False
    error: str | None = None
    status: int | None = None
    _thread: threading.Thread = field(init=False)
    _sock: socket.socket | None = field(init=False, default=None)

    def start(self) -> StreamClient:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        host, port = self.proxy_url.removeprefix("http://").rsplit(":", 1)
        try:
            sock = socket.create_connection((host, int(port)), timeout=120)
            self._sock = sock
            sock.sendall(f"GET /sse?{self.query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                         "Accept: text/event-stream\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed before the response head")
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            self.status = int(head.split(b" ", 2)[1])
            chunked = b"chunked" in head.lower()
            tail = b""
            remaining = 0  # bytes left in the current chunk (+2 for its CRLF)
            while True:
                if chunked:
                    while buf:
                        if remaining == 0:
                            line_end = buf.find(b"\r\n")
                            if line_end < 0:
                                break
                            size = int(buf[:line_end].split(b";")[0], 16)
                            buf = buf[line_end + 2:]
                            if size == 0:
                                self.done = True
                                return
                            remaining = size + 2
                        take = buf[:remaining]
                        buf = buf[len(take):]
                        payload = take[:max(0, remaining - 2)]  # not the chunk's CRLF
                        remaining -= len(take)
                        self._count(payload, tail)
                        tail = (tail + payload)[-2:]
                else:
                    self._count(buf, tail)
                    tail = (tail + buf)[-2:]
                    buf = b""
                data = sock.recv(1 << 20)
                if not data:
                    self.done = not chunked
                    return
                buf += data
        except OSError as exc:
            self.error = str(exc)

    def _count(self, payload: bytes, tail: bytes) -> None:
        self.body_bytes += len(payload)
        self.events += sse_terminators(payload, tail)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def worker_pids(parent: int) -> list[int]:
    """The `recorder.worker` processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"recorder.worker" in cmdline:
            found.append(int(entry.name))
    return found


def wait_worker(parent: int, timeout: float = 20.0, *, not_in: tuple[int, ...] = ()) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in worker_pids(parent) if p not in not_in]
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("no recorder.worker process appeared")


class RssSampler:
    """Samples a process's RSS in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return self.peak


@dataclass(frozen=True)
class StreamAccount:
    """What a capture holds of one stream, and what its gaps say was shed."""

    stream_id: int
    recorded_bytes: int
    recorded_events: int
    shed_bytes: int
    shed_events: int
    gaps: int
    reasons: frozenset[str]
    close_reason: str | None


def stream_accounts(db: Path) -> list[StreamAccount]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = []
        for stream_id, close_reason in conn.execute(
                "SELECT id, close_reason FROM streams ORDER BY id"):
            (recorded_bytes,) = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM chunks "
                                             "WHERE stream_id = ?", (stream_id,)).fetchone()
            (recorded_events,) = conn.execute("SELECT count(*) FROM sse_events WHERE "
                                              "stream_id = ? AND kind = 'event'",
                                              (stream_id,)).fetchone()
            shed_bytes, shed_events, gaps = conn.execute(
                "SELECT coalesce(sum(bytes), 0), coalesce(sum(events), 0), count(*) "
                "FROM capture_gaps WHERE stream_id = ?", (stream_id,)).fetchone()
            reasons = frozenset(r for (r,) in conn.execute(
                "SELECT DISTINCT reason FROM capture_gaps WHERE stream_id = ?", (stream_id,)))
            out.append(StreamAccount(stream_id, recorded_bytes, recorded_events, shed_bytes,
                                     shed_events, gaps, reasons, close_reason))
        return out
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def query(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def wait_exit(proc: subprocess.Popen[str], timeout: float) -> tuple[int | None, float]:
    """(return code or None, seconds taken)."""
    start = time.monotonic()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - start


def kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
