"""SSE throughput, latency and memory: direct vs bare mitmdump vs `ssetap record`.

Usage (from the repository root, with the project's venv):

    /work/venv/bin/python bench/stream_bench.py            # 20k events x 3 rounds + long stream
    /work/venv/bin/python bench/stream_bench.py --quick    # ~6 s smoke run (more on a busy box)
    /work/venv/bin/python bench/stream_bench.py --events 50000 --rounds 5 --long 0

What it does, in one process tree on loopback (ephemeral ports only):

- `bench/sse_server.py` (a separate process, so producing does not steal the client's loop)
  writes N ~160-byte MCP-style notifications (`event: message`, JSON-RPC `notifications/message`
  carrying `seq` and the send time `t`), one event per HTTP chunk by default, with a `: ping`
  comment every `--ping` events.
- The client (this process, a raw asyncio Protocol: de-chunk, split on blank lines, read `t`)
  counts events and measures per-event latency as arrival time minus `t` (same machine clock).
- Modes, interleaved in every round so that load from other work on the machine hits all three:
    a  direct           client -> server
    b  mitmdump         client -> `mitmdump -s bench/stream_addon.py` (stream = True only)
    c  ssetap record    client -> `ssetap record --upstream ...` (reverse mode) -> server
  Both proxies are started fresh at the start of each round (idle until their turn) and
  warmed up with a short stream (not measured) just before their phase, which then runs:
    burst  N events as fast as they drain: events/s, and latency (mostly queueing in a burst);
    paced  `--paced-events` at `--paced-rate` events/s: latency without queueing.
- For c it waits until the capture holds every event ("drain"), stops the recorder with SIGINT
  (it flushes and exits 0) and checks the capture: every event of every stream recorded.
- RSS (VmRSS from /proc) of the proxy process, plus for c the worker process (the child of
  `ssetap record`): before the burst, peak while it runs, after it drained.
- CPU time per event of every process involved (from /proc/PID/stat; the proxy's event-loop
  thread separately from its other threads) shows where time goes; "others" is CPU used by
  processes that are not ours (other people's tests on a shared 2-core box), so a noisy
  measurement can be recognised as such.
- A long-stream phase sends `--long` events on one stream through `ssetap record`, first paced
  at `--long-rate` (below what the recorder can write: growth there is a leak), then as a burst
  (faster than it writes: RSS also holds the backlog), sampling RSS at 10 %, 50 % and 100 % of
  each stream and once the capture caught up.
- `--profile` adds an unmeasured burst through each proxy under py-spy (collapsed stacks in
  bench/results/); `--recorder-path DIR` measures the `recorder` package in DIR instead of the
  installed one (A/B a patch without touching the checkout).

Output: progress lines on stderr (one per phase), a table on stdout, then one JSON line with
every number, also written to bench/results/latest.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sse_server  # bench/ is on sys.path when this file runs as a script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_FILE = HERE / "results" / "latest.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
LISTENING = re.compile(r"listening on http://\[?[^\]\s]*\]?:(\d+)")
WARMUP_EVENTS = 500
MODES = ("direct", "mitmdump", "ssetap")
MODE_LABEL = {"direct": "a direct", "mitmdump": "b mitmdump", "ssetap": "c ssetap record"}
TARGET_C_OVER_B = 0.9
QUIET_OTHERS_PCT = 10.0
# Set by --recorder-path: a directory holding another `recorder` package to measure.
RECORDER_PATH = ""

T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- /proc ------------------------------------------------------------------------------------


def rss_kb(pid: int | None) -> int:
    """VmRSS of a live process in kB; 0 when it is gone (or pid is None)."""
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _stat_ticks(path: str) -> int:
    """utime + stime from a /proc stat file (fields 14 and 15; `comm` may contain spaces)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(main thread, whole process) CPU ticks. The main thread of the proxy runs the event loop;
    the rest are helper threads (ssetap's sender, the worker's SQLite writer)."""
    return _stat_ticks(f"/proc/{pid}/task/{pid}/stat"), _stat_ticks(f"/proc/{pid}/stat")


def system_busy_ticks() -> int:
    with open("/proc/stat", "rb") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return sum(values[:8]) - values[3] - values[4]


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


@dataclass
class CpuSnapshot:
    wall: float
    system: int
    procs: dict[str, tuple[int, int]]


def cpu_snapshot(pids: dict[str, int | None]) -> CpuSnapshot:
    return CpuSnapshot(time.monotonic(), system_busy_ticks(),
                       {name: cpu_ticks(pid) for name, pid in pids.items() if pid is not None})


def cpu_report(a: CpuSnapshot, b: CpuSnapshot, events: int) -> tuple[dict[str, float], float]:
    """CPU microseconds per event for each of our processes (and main/other threads), and
    the share of the machine's CPU used by processes that are not ours, in percent."""
    per_event: dict[str, float] = {}
    ours = 0
    for name, (main_b, total_b) in b.procs.items():
        main_a, total_a = a.procs.get(name, (main_b, total_b))
        total = total_b - total_a
        ours += total
        scale = 1e6 / CLK_TCK / max(events, 1)
        per_event[name] = round(total * scale, 2)
        if name in ("proxy", "worker"):
            per_event[f"{name}.main"] = round((main_b - main_a) * scale, 2)
            # Thread and process stat files are read one after the other: clamp tick jitter.
            per_event[f"{name}.threads"] = round(max(total - (main_b - main_a), 0) * scale, 2)
    wall_ticks = max((b.wall - a.wall) * CLK_TCK * NCPU, 1e-9)
    others = max(0.0, (b.system - a.system - ours) / wall_ticks * 100.0)
    return per_event, round(others, 1)


# --- the client ---------------------------------------------------------------------------------


@dataclass
class StreamResult:
    events: int
    comments: int
    started: float
    first_at: float
    last_at: float
    latencies: array[float]  # seconds, one per event
    complete: bool
    status: int

    @property
    def seconds(self) -> float:
        return max(self.last_at - self.started, 1e-9)

    @property
    def eps(self) -> float:
        return self.events / self.seconds


class _SseClient(asyncio.Protocol):
    """Reads one SSE response: HTTP/1.1 head, chunked (or close-delimited) body, events.

    Parsing is the minimum our own server's output needs (CRLF lines, events start with
    `event: message`, `t` is the last number before `}`), so the client is never the
    bottleneck: it must be much faster than the slowest thing measured.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, marks: Sequence[int],
                 on_mark: Callable[[int], None] | None) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.body = bytearray()
        self.head_done = False
        self.chunked = False
        self.ended = False
        self.remaining = 0
        self.need_crlf = False
        self.status = 0
        self.events = 0
        self.comments = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.latencies: array[float] = array("d")
        self.marks = sorted(marks)
        self.on_mark = on_mark

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()  # one arrival time for everything in this read: it came together
        if self.head_done and not self.chunked:
            self.body += data
        else:
            self.raw += data
            if not self.head_done and not self._head():
                return
            if self.chunked:
                self._dechunk()
            else:
                self.body += self.raw
                self.raw.clear()
        self._events(now)
        if self.ended:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            self._events(time.time())
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def _head(self) -> bool:
        end = self.raw.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.raw[:end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        del self.raw[:end + 4]
        self.head_done = True
        return True

    def _dechunk(self) -> None:
        raw = self.raw
        pos = 0
        size_raw = len(raw)
        while not self.ended:
            if self.remaining:
                take = min(self.remaining, size_raw - pos)
                if not take:
                    break
                self.body += raw[pos:pos + take]
                pos += take
                self.remaining -= take
                if self.remaining:
                    break
                self.need_crlf = True
            if self.need_crlf:
                if size_raw - pos < 2:
                    break
                pos += 2
                self.need_crlf = False
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if size == 0:
                self.ended = True
            self.remaining = size
        del raw[:pos]

    def _events(self, now: float) -> None:
        body = self.body
        find = body.find
        start = 0
        before = self.events
        while True:
            end = find(b"\r\n\r\n", start)
            if end < 0:
                break
            if body.startswith(b"event: message", start):
                i = find(b'"t":', start, end)
                j = find(b"}", i, end)
                self.latencies.append(now - float(body[i + 4:j]))
                self.events += 1
                if self.marks and self.events >= self.marks[0]:
                    self.marks.pop(0)
                    if self.on_mark is not None:
                        self.on_mark(self.events)
            else:
                self.comments += 1
            start = end + 4
        if start:
            del body[:start]
        if self.events != before:
            if not before:
                self.first_at = now
            self.last_at = now


async def fetch(port: int, shape: Config, *, n: int, rate: float = 0.0,
                marks: Sequence[int] = (),
                on_mark: Callable[[int], None] | None = None) -> StreamResult:
    """GET one SSE stream of `n` events through `port` and measure it (`shape` gives the
    server's ping interval, events per write and chunk split)."""
    loop = asyncio.get_running_loop()
    # Bounded: a burst gets 2000 events/s at the very least, a paced stream twice its length.
    timeout = 30.0 + (n / rate * 2 if rate > 0 else n / 2000)
    started = time.time()
    transport, client = await loop.create_connection(
        lambda: _SseClient(loop, marks, on_mark), "127.0.0.1", port)
    query = f"n={n}&rate={rate}&ping={shape.ping}&group={shape.group}&split={shape.split}"
    transport.write(f"GET /sse?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Accept: text/event-stream\r\nCache-Control: no-store\r\n"
                    "User-Agent: ssetap-bench\r\n\r\n".encode())
    try:
        await asyncio.wait_for(asyncio.shield(client.done), timeout)
    except TimeoutError:
        pass
    finally:
        transport.close()
    return StreamResult(client.events, client.comments, started, client.first_at or started,
                        client.last_at or started, client.latencies,
                        client.ended and client.events == n, client.status)


# --- processes ----------------------------------------------------------------------------------


class BenchError(Exception):
    """Something the benchmark cannot go on without (a process that did not start...)."""


@dataclass
class Proxy:
    kind: str  # "mitmdump" or "ssetap"
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    worker_pid: int | None = None
    db: Path | None = None
    # What went through it, in stream order: (events, comments) per stream.
    streams: list[tuple[int, int]] = field(default_factory=list)

    @property
    def pids(self) -> dict[str, int | None]:
        return {"proxy": self.proc.pid, "worker": self.worker_pid}

    def rss(self) -> dict[str, int]:
        proxy, worker = rss_kb(self.proc.pid), rss_kb(self.worker_pid)
        return {"proxy": proxy, "worker": worker, "total": proxy + worker}

    @property
    def expected_rows(self) -> int:
        return sum(e + c for e, c in self.streams)


class Processes:
    """Every process this benchmark starts, so each is ended by its own pid, whatever happens."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.extra_pids: list[int] = []

    def spawn(self, cmd: list[str], log: Path, *, stdin: int | None = subprocess.DEVNULL,
              stdout: int | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # cwd is the temp dir, not the checkout: `python -m recorder.worker` puts its cwd first
        # on sys.path, which would shadow the recorder chosen with --recorder-path.
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout if stdout is not None else f,
                                    stderr=f, cwd=log.parent, env=env)
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for pid in self.extra_pids:  # an ssetap worker whose proxy was killed
            with contextlib.suppress(ProcessLookupError):
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)


def _venv_tool(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    if not candidate.exists():
        raise BenchError(f"{name} not found next to {sys.executable}; run with the project's venv")
    return str(candidate)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def start_server(procs: Processes, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = procs.spawn([sys.executable, str(HERE / "sse_server.py"), "--port", "0"],
                       tmp / "server.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        raise BenchError(f"the SSE server did not start:\n{_tail(tmp / 'server.log')}")
    return proc, int(line)


async def _wait_port(proc: subprocess.Popen[bytes], log: Path, what: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    raise BenchError(f"{what} did not start listening (exit {proc.poll()}):\n{_tail(log)}")


async def start_mitmdump(procs: Processes, tmp: Path, upstream: int, tag: str) -> Proxy:
    log = tmp / f"mitmdump-{tag}.log"
    proc = procs.spawn([_venv_tool("mitmdump"), "-q",
                        "--mode", f"reverse:http://127.0.0.1:{upstream}",
                        "--listen-host", "127.0.0.1", "--listen-port", "0",
                        "-s", str(HERE / "stream_addon.py")], log)
    return Proxy("mitmdump", proc, await _wait_port(proc, log, "mitmdump"), log)


async def start_ssetap(procs: Processes, tmp: Path, upstream: int, tag: str) -> Proxy:
    log = tmp / f"ssetap-{tag}.log"
    db = tmp / f"capture-{tag}.db"
    env = None
    if RECORDER_PATH:
        # A/B a patched checkout: PYTHONPATH comes before the venv's editable install, and the
        # recorder passes its own root on to the worker process.
        env = dict(os.environ)
        env["PYTHONPATH"] = RECORDER_PATH + os.pathsep + env.get("PYTHONPATH", "")
    proc = procs.spawn([_venv_tool("ssetap"), "record",
                        "--upstream", f"http://127.0.0.1:{upstream}",
                        "--listen", "127.0.0.1:0", "--db", str(db)], log, env=env)
    port = await _wait_port(proc, log, "ssetap record")
    proxy = Proxy("ssetap", proc, port, log, db=db)
    # The worker is started while options load, before the proxy announces its port.
    deadline = time.monotonic() + 10
    while proxy.worker_pid is None and time.monotonic() < deadline:
        kids = children(proc.pid)
        if kids:
            proxy.worker_pid = kids[0]
            procs.extra_pids.append(kids[0])
        else:
            await asyncio.sleep(0.05)
    if proxy.worker_pid is None:
        raise BenchError("ssetap record has no worker process")
    return proxy


async def stop_proxy(proxy: Proxy, timeout: float = 120.0) -> int | None:
    """SIGINT, as a user's Ctrl-C: ssetap flushes everything and exits 0."""
    proxy.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    while proxy.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if proxy.proc.poll() is None:
        proxy.proc.kill()
        proxy.proc.wait(5)
        return None
    return proxy.proc.returncode


def recorded_rows(db: Path) -> int:
    """Rows in sse_events (events and comments). max(id) is O(log n), so polling it does not
    load the machine; ids are assigned in arrival order and committed in that order."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            (value,) = con.execute("SELECT coalesce(max(id), 0) FROM sse_events").fetchone()
            # What the recorder shed under overload is accounted for too (capture_gaps).
            try:
                (shed,) = con.execute("SELECT coalesce(sum(events), 0) FROM capture_gaps"
                                      ).fetchone()
            except sqlite3.OperationalError:
                shed = 0
        finally:
            con.close()
        return int(value) + int(shed)
    except sqlite3.Error:
        return 0


async def wait_recorded(proxy: Proxy, timeout: float) -> float | None:
    """Seconds until the capture holds every row sent so far; None on timeout."""
    assert proxy.db is not None
    start = time.monotonic()
    target = proxy.expected_rows
    while recorded_rows(proxy.db) < target:
        if time.monotonic() - start > timeout or proxy.proc.poll() is not None:
            return None
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def verify_capture(proxy: Proxy) -> dict[str, Any]:
    """After the recorder exited: does the capture hold every event and comment of every stream?"""
    assert proxy.db is not None
    con = sqlite3.connect(f"file:{proxy.db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT s.id, s.close_reason,"
            " (SELECT count(*) FROM sse_events e WHERE e.stream_id = s.id AND e.kind = 'event'),"
            " (SELECT count(*) FROM sse_events e WHERE e.stream_id = s.id AND e.kind = 'comment'),"
            " (SELECT count(*) FROM messages m WHERE m.stream_id = s.id)"
            " FROM streams s ORDER BY s.id").fetchall()
        try:
            shed = dict(con.execute("SELECT stream_id, coalesce(sum(events), 0) FROM capture_gaps"
                                    " GROUP BY stream_id").fetchall())
        except sqlite3.OperationalError:
            shed = {}
    finally:
        con.close()
    expected_events = sum(e for e, _ in proxy.streams)
    recorded_events = sum(r[2] for r in rows)
    # A stream the recorder shed part of (an overload: it never queues without bound) must
    # account for every event and comment as recorded or shed (capture_gaps).
    mismatches = [
        {"stream": i, "expected_events": exp[0], "recorded_events": got[2],
         "expected_comments": exp[1], "recorded_comments": got[3], "close_reason": got[1],
         "shed": shed.get(got[0], 0)}
        for i, (exp, got) in enumerate(zip(proxy.streams, rows))
        if ((exp[0], exp[1]) != (got[2], got[3]) and not shed.get(got[0]))
        or exp[0] + exp[1] != got[2] + got[3] + shed.get(got[0], 0) or got[1] != "end"
    ]
    total_shed = sum(shed.values())
    return {
        "streams_expected": len(proxy.streams), "streams_recorded": len(rows),
        "events_expected": expected_events, "events_recorded": recorded_events,
        "events_shed": total_shed,
        "events_lost": expected_events - recorded_events - total_shed,
        "messages_recorded": sum(r[4] for r in rows), "mismatches": mismatches,
    }


# --- phases -------------------------------------------------------------------------------------


@dataclass
class Config:
    events: int
    rounds: int
    long: int
    long_rate: float
    paced_events: int
    paced_rate: float
    ping: int
    group: int
    split: int


@dataclass
class ModeRun:
    mode: str
    round: int
    events: int
    seconds: float
    eps: float
    burst_latency: array[float]
    paced_latency: array[float]
    cpu_us_per_event: dict[str, float]
    others_cpu_pct: float
    load1: float
    rss_before_kb: dict[str, int] = field(default_factory=dict)
    rss_peak_kb: dict[str, int] = field(default_factory=dict)
    rss_after_kb: dict[str, int] = field(default_factory=dict)
    drain_s: float | None = None
    exit_code: int | None = None
    capture: dict[str, Any] | None = None


def _comments(n: int, ping: int) -> int:
    return n // ping if ping else 0


def _check(result: StreamResult, n: int, what: str) -> None:
    if not result.complete:
        raise BenchError(f"{what}: the client got {result.events} of {n} events "
                         f"(HTTP {result.status}); the stream did not complete")


async def run_mode(mode: str, rnd: int, cfg: Config, proxy: Proxy | None,
                   server: subprocess.Popen[bytes], server_port: int) -> ModeRun:
    port = proxy.port if proxy else server_port

    # Warm-up (not measured): first-flow costs (lazy imports, the upstream connection code)
    # and, for ssetap, proof that the worker is up and writing.
    warm = await fetch(port, cfg, n=WARMUP_EVENTS)
    _check(warm, WARMUP_EVENTS, f"{mode} warm-up")
    if proxy:
        proxy.streams.append((WARMUP_EVENTS, _comments(WARMUP_EVENTS, cfg.ping)))
        if proxy.kind == "ssetap" and await wait_recorded(proxy, 30) is None:
            raise BenchError(f"ssetap did not record the warm-up stream:\n{_tail(proxy.log)}")
    await asyncio.sleep(0.1)  # let the warm-up's connection teardown finish before measuring

    rss_before = proxy.rss() if proxy else {}
    peak: dict[str, int] = dict(rss_before)

    def sample(_: int) -> None:
        if proxy:
            for key, value in proxy.rss().items():
                peak[key] = max(peak.get(key, 0), value)

    pids: dict[str, int | None] = {"server": server.pid, "client": os.getpid()}
    if proxy:
        pids.update(proxy.pids)
    load1 = loadavg()[0]
    cpu_a = cpu_snapshot(pids)
    burst = await fetch(port, cfg, n=cfg.events, marks=range(cfg.events // 10, cfg.events + 1,
                                                        max(cfg.events // 10, 1)),
                        on_mark=sample)
    cpu_b = cpu_snapshot(pids)
    _check(burst, cfg.events, f"{mode} burst")
    drain = None
    # Others' share is taken over the burst itself (what the measured throughput competed with).
    cpu, others = cpu_report(cpu_a, cpu_b, cfg.events)
    if proxy:
        proxy.streams.append((cfg.events, _comments(cfg.events, cfg.ping)))
        sample(0)
        if proxy.kind == "ssetap":
            drain = await wait_recorded(proxy, 120)
            if drain is None:
                raise BenchError(f"ssetap did not record the burst in 120 s:\n{_tail(proxy.log)}")
            # The worker's CPU counts until it caught up: that is its real cost per event.
            cpu_b.procs["worker"] = cpu_snapshot({"worker": proxy.worker_pid}).procs["worker"]
            cpu, _ = cpu_report(cpu_a, cpu_b, cfg.events)
    rss_after = proxy.rss() if proxy else {}

    paced = await fetch(port, cfg, n=cfg.paced_events, rate=cfg.paced_rate)
    _check(paced, cfg.paced_events, f"{mode} paced")
    run = ModeRun(mode, rnd, cfg.events, burst.seconds, burst.eps, burst.latencies,
                  paced.latencies, cpu, others, load1, rss_before, peak, rss_after, drain)
    if proxy:
        proxy.streams.append((cfg.paced_events, _comments(cfg.paced_events, cfg.ping)))
        if proxy.kind == "ssetap" and await wait_recorded(proxy, 60) is None:
            raise BenchError(f"ssetap did not record the paced stream:\n{_tail(proxy.log)}")
        run.exit_code = await stop_proxy(proxy)
        if proxy.kind == "ssetap":
            # 3: the recorder shed part of the burst (recorded as gaps, checked below).
            if run.exit_code not in (0, 3):
                raise BenchError(f"ssetap record exited {run.exit_code}:\n{_tail(proxy.log)}")
            run.capture = verify_capture(proxy)
            if run.exit_code == 3 and not run.capture["events_shed"]:
                raise BenchError(f"ssetap record exited 3 with nothing shed:\n{_tail(proxy.log)}")

    lat = _pcts(burst.latencies)
    plat = _pcts(paced.latencies)
    extra = ""
    if proxy:
        extra = (f" | RSS {_mb(rss_before.get('total', 0))}->{_mb(peak.get('total', 0))}"
                 f"->{_mb(rss_after.get('total', 0))} MB")
    if drain is not None:
        extra += f" | drain {drain:.2f} s"
    if run.capture:
        extra += f" | lost {run.capture['events_lost']}"
        if run.capture.get("events_shed"):
            extra += f" | shed {run.capture['events_shed']}"
    progress(f"round {rnd}/{cfg.rounds} {MODE_LABEL[mode]:<16} {cfg.events} ev in "
             f"{burst.seconds:5.2f} s = {burst.eps:9,.0f} ev/s | burst p50/p99 "
             f"{lat[0]:.1f}/{lat[1]:.1f} ms | paced p50/p99 {plat[0]:.2f}/{plat[1]:.2f} ms"
             f"{extra} | others {others:.0f}% load {load1:.2f}")
    return run


@dataclass
class LongRun:
    label: str  # "paced" or "burst"
    rate: float  # events/s asked of the server; 0 = as fast as it drains
    events: int
    seconds: float
    eps: float
    samples: list[dict[str, Any]]
    drain_s: float | None
    cpu_us_per_event: dict[str, float]
    others_cpu_pct: float
    peak: dict[str, int]


async def run_long_stream(cfg: Config, proxy: Proxy, server: subprocess.Popen[bytes],
                          rate: float) -> LongRun:
    """One long stream through a running recorder, RSS sampled at 10 %, 50 %, 100 % and after
    the capture caught up. Paced below the recorder's capacity, growth would be a leak; in a
    burst faster than the recorder writes, RSS also holds the backlog not yet written."""
    assert proxy.db is not None
    db = proxy.db
    label = f"paced {rate:.0f}/s" if rate else "burst"
    start = time.monotonic()
    samples: list[dict[str, Any]] = [{"at": "start", "events": 0, "t": 0.0,
                                      "recorded_rows": recorded_rows(db), "backlog_rows": 0,
                                      **proxy.rss()}]
    base_rows = samples[0]["recorded_rows"]

    marks = sorted({max(cfg.long // 10, 1), max(cfg.long // 2, 1), cfg.long})
    # Between the reported marks, every 2 % of the stream: the peak backlog and peak RSS tell
    # memory held for rows not yet written (released later, if not to the OS) from a leak.
    fine = sorted(set(range(max(cfg.long // 50, 1), cfg.long + 1, max(cfg.long // 50, 1)))
                  | set(marks))
    peak = {"backlog_rows": 0, "backlog_at": 0, "total": samples[0]["total"], "total_at": 0}

    def sample(events: int) -> None:
        rows = recorded_rows(db)
        # Rows the client has seen but the capture does not hold yet: RSS also holds these.
        backlog = max(base_rows + events + _comments(events, cfg.ping) - rows, 0)
        rss = proxy.rss()
        if backlog > peak["backlog_rows"]:
            peak.update(backlog_rows=backlog, backlog_at=events)
        if rss["total"] > peak["total"]:
            peak.update(total=rss["total"], total_at=events)
        if events not in marks:
            return
        samples.append({"at": f"{events} received", "events": events,
                        "t": round(time.monotonic() - start, 2), "recorded_rows": rows,
                        "backlog_rows": backlog, **rss})
        progress(f"long {label}: {events} events received, {rows - base_rows} rows recorded "
                 f"({backlog} behind), RSS proxy {_mb(rss['proxy'])} + worker "
                 f"{_mb(rss['worker'])} = {_mb(rss['total'])} MB")

    pids: dict[str, int | None] = {"server": server.pid, "client": os.getpid(), **proxy.pids}
    cpu_a = cpu_snapshot(pids)
    result = await fetch(proxy.port, cfg, n=cfg.long, rate=rate, marks=fine, on_mark=sample)
    _check(result, cfg.long, f"long {label}")
    proxy.streams.append((cfg.long, _comments(cfg.long, cfg.ping)))
    drain = await wait_recorded(proxy, 300)
    cpu_b = cpu_snapshot(pids)
    cpu, others = cpu_report(cpu_a, cpu_b, cfg.long)
    samples.append({"at": "drained", "events": cfg.long, "t": round(time.monotonic() - start, 2),
                    "recorded_rows": recorded_rows(db), "backlog_rows": 0, **proxy.rss()})
    progress(f"long {label}: {cfg.long} events in {result.seconds:.2f} s = {result.eps:,.0f} "
             f"ev/s, capture caught up {'never' if drain is None else f'{drain:.2f} s'} later, "
             f"RSS then {_mb(samples[-1]['total'])} MB | others {others:.0f}%")
    return LongRun(label, rate, cfg.long, result.seconds, result.eps, samples, drain, cpu, others,
                   peak)


async def run_long(cfg: Config, proxy: Proxy,
                   server: subprocess.Popen[bytes]) -> tuple[list[LongRun], dict[str, Any]]:
    """Paced first (a leak shows as growth there), then a burst on the same recorder."""
    warm = await fetch(proxy.port, cfg, n=WARMUP_EVENTS)
    _check(warm, WARMUP_EVENTS, "long warm-up")
    proxy.streams.append((WARMUP_EVENTS, _comments(WARMUP_EVENTS, cfg.ping)))
    await wait_recorded(proxy, 30)
    await asyncio.sleep(0.1)
    runs = []
    if cfg.long_rate > 0:
        runs.append(await run_long_stream(cfg, proxy, server, cfg.long_rate))
    runs.append(await run_long_stream(cfg, proxy, server, 0.0))
    code = await stop_proxy(proxy)
    capture = verify_capture(proxy) if code in (0, 3) else {"exit_code": code,
                                                             "events_lost": None}
    capture["exit_code"] = code
    progress(f"long streams: recorder exit {code}, capture {capture.get('events_recorded')}/"
             f"{capture.get('events_expected')} events, lost {capture.get('events_lost')}")
    return runs, capture


async def _pyspy_start(procs: Processes, pid: int, out: Path) -> subprocess.Popen[bytes]:
    # --nonblocking: do not pause the target to sample it (less perturbation); --threads: tell
    # the event-loop thread from helper threads; idle threads are left out by default.
    log = out.with_suffix(".log")
    proc = procs.spawn([_venv_tool("py-spy"), "record", "--pid", str(pid), "--rate", "250",
                        "--format", "raw", "--nolineno", "--threads", "--nonblocking",
                        "--output", str(out)], log)
    deadline = time.monotonic() + 10
    while "Sampling process" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"py-spy did not attach to {pid}:\n{_tail(log)}")
        await asyncio.sleep(0.05)
    return proc


async def _pyspy_stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    for _ in range(200):
        if proc.poll() is not None:
            return
        await asyncio.sleep(0.05)
    proc.kill()


def top_frames(path: Path, pid: int, limit: int = 10) -> dict[str, Any]:
    """Summarise py-spy's collapsed stacks: samples per thread (main = event loop) and the
    functions that were on CPU themselves (self time), as a share of all samples."""
    threads: dict[str, int] = {}
    self_time: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # The root frame is "thread (TID): NAME" (with --threads); the main thread runs the
        # event loop, the others are named by the recorder ("ssetap-sender", ...).
        root = frames[0]
        tid = root[root.find("(") + 1:root.find(")")]
        name = root.partition("): ")[2] or root
        thread = "main" if tid == str(pid) else name
        threads[thread] = threads.get(thread, 0) + count
        total += count
        if len(frames) > 1:
            leaf = f"{thread}: {frames[-1]}"
            self_time[leaf] = self_time.get(leaf, 0) + count
    top = sorted(self_time.items(), key=lambda kv: -kv[1])[:limit]
    return {"samples": total,
            "threads_pct": {k: round(100 * v / max(total, 1), 1) for k, v in threads.items()},
            "top_self_pct": [[name, round(100 * v / max(total, 1), 1)] for name, v in top]}


async def run_profile(cfg: Config, procs: Processes, tmp: Path,
                      server_port: int) -> dict[str, Any]:
    """One unmeasured burst through each proxy under py-spy (py-spy itself takes CPU)."""
    out_dir = RESULTS_FILE.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    mitm, sse = await asyncio.gather(start_mitmdump(procs, tmp, server_port, "prof"),
                                     start_ssetap(procs, tmp, server_port, "prof"))
    n = max(cfg.events, 20000)
    result: dict[str, Any] = {}
    for proxy in (mitm, sse):
        _check(await fetch(proxy.port, cfg, n=WARMUP_EVENTS), WARMUP_EVENTS, "profile warm-up")
        proxy.streams.append((WARMUP_EVENTS, _comments(WARMUP_EVENTS, cfg.ping)))
        if proxy.kind == "ssetap":
            await wait_recorded(proxy, 30)
        targets = {f"{proxy.kind}-proxy": proxy.proc.pid}
        if proxy.worker_pid:
            targets[f"{proxy.kind}-worker"] = proxy.worker_pid
        spies = {name: await _pyspy_start(procs, pid, out_dir / f"profile-{name}.txt")
                 for name, pid in targets.items()}
        burst = await fetch(proxy.port, cfg, n=n)
        _check(burst, n, f"profile {proxy.kind}")
        proxy.streams.append((n, _comments(n, cfg.ping)))
        if proxy.kind == "ssetap":
            await wait_recorded(proxy, 120)
        for spy in spies.values():
            await _pyspy_stop(spy)
        for name, pid in targets.items():
            summary = top_frames(out_dir / f"profile-{name}.txt", pid)
            summary["eps_under_profiler"] = round(burst.eps)
            result[name] = summary
            progress(f"profile {name}: {summary.get('samples', 0)} samples, threads "
                     f"{summary.get('threads_pct')}, written to {out_dir / f'profile-{name}.txt'}")
        await stop_proxy(proxy)
    return result


# --- reporting ----------------------------------------------------------------------------------


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def _pcts(latencies: Iterable[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds (nearest rank)."""
    values = sorted(latencies)
    if not values:
        return (float("nan"), float("nan"))

    def rank(q: float) -> float:
        return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))] * 1000.0

    return rank(0.50), rank(0.99)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def recorder_version() -> dict[str, Any]:
    """Which recorder was measured: the checkout's commit and its uncommitted recorder/ files
    (the tree changes under a shared checkout), or the --recorder-path directory."""
    if RECORDER_PATH:
        return {"path": RECORDER_PATH}
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "recorder/"],
                               capture_output=True, text=True, timeout=10,
                               check=False).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {"path": str(ROOT)}
    return {"path": str(ROOT), "commit": head,
            "uncommitted": sorted(line[3:] for line in dirty if line.strip())}


def summarise(cfg: Config, runs: list[ModeRun], long_runs: list[LongRun],
              long_capture: dict[str, Any] | None,
              load_before: list[float], load_after: list[float], seconds: float) -> dict[str, Any]:
    by_mode = {m: [r for r in runs if r.mode == m] for m in MODES}
    modes: dict[str, Any] = {}
    for mode, mode_runs in by_mode.items():
        burst = [x for r in mode_runs for x in r.burst_latency]
        paced = [x for r in mode_runs for x in r.paced_latency]
        b50, b99 = _pcts(burst)
        p50, p99 = _pcts(paced)
        cpu_keys = sorted({k for r in mode_runs for k in r.cpu_us_per_event})
        modes[mode] = {
            "eps_median": round(_median([r.eps for r in mode_runs])),
            "eps_rounds": [round(r.eps) for r in mode_runs],
            "burst_seconds_rounds": [round(r.seconds, 3) for r in mode_runs],
            "burst_latency_ms": {"p50": round(b50, 3), "p99": round(b99, 3)},
            "paced_latency_ms": {"p50": round(p50, 3), "p99": round(p99, 3)},
            "cpu_us_per_event_median": {
                k: round(_median([r.cpu_us_per_event.get(k, 0.0) for r in mode_runs]), 2)
                for k in cpu_keys},
            "others_cpu_pct_rounds": [r.others_cpu_pct for r in mode_runs],
            # Share of one core the proxy's process used during the burst: near 100 % it is
            # the bottleneck; well below, it was waiting for CPU (or for its peers).
            "proxy_busy_pct_rounds": [round(r.eps * r.cpu_us_per_event.get("proxy", 0.0) / 1e4)
                                      for r in mode_runs],
            "load1_rounds": [r.load1 for r in mode_runs],
        }
        if mode != "direct":
            modes[mode]["rss_kb_rounds"] = [
                {"before": r.rss_before_kb, "peak": r.rss_peak_kb, "after": r.rss_after_kb}
                for r in mode_runs]
        if mode == "ssetap":
            modes[mode]["drain_s_rounds"] = [None if r.drain_s is None else round(r.drain_s, 3)
                                             for r in mode_runs]
            modes[mode]["exit_codes"] = [r.exit_code for r in mode_runs]
            modes[mode]["capture_rounds"] = [r.capture for r in mode_runs]

    def per_round(num: str, den: str) -> list[float]:
        return [round(x.eps / y.eps, 3) for x, y in zip(by_mode[num], by_mode[den])]

    ratios: dict[str, dict[str, Any]] = {}
    for name, (num, den) in {"b/a": ("mitmdump", "direct"), "c/a": ("ssetap", "direct"),
                             "c/b": ("ssetap", "mitmdump")}.items():
        rounds = per_round(num, den)
        ratios[name] = {"median": round(_median(rounds), 3), "rounds": rounds}
    # Other people's work on a shared box lands on some phases and not others; rounds where
    # neither b nor c saw more than QUIET_OTHERS_PCT of foreign CPU give the cleanest ratio.
    quiet = [round(c.eps / b.eps, 3) for b, c in zip(by_mode["mitmdump"], by_mode["ssetap"])
             if b.others_cpu_pct <= QUIET_OTHERS_PCT and c.others_cpu_pct <= QUIET_OTHERS_PCT]
    ratios["c/b quiet"] = {"median": round(_median(quiet), 3) if quiet else None,
                           "rounds": quiet}
    # Proxy CPU per event, c over b: the recorder's cost inside the proxy process (tap, sender
    # thread). Contention moves it too (a starved proxy finds more bytes per read, and spends
    # less per event), so it is a rough guide, not a constant.
    proxy_b = _median([r.cpu_us_per_event.get("proxy", 0.0) for r in by_mode["mitmdump"]])
    proxy_c = _median([r.cpu_us_per_event.get("proxy", 0.0) for r in by_mode["ssetap"]])
    ratios["proxy cpu c/b"] = {"median": round(proxy_c / proxy_b, 3) if proxy_b else None,
                               "rounds": []}
    lost = sum((r.capture or {}).get("events_lost", 0) for r in by_mode["ssetap"])
    summary: dict[str, Any] = {
        "config": cfg.__dict__, "recorder": recorder_version(), "seconds": round(seconds, 1),
        "ncpu": NCPU,
        "python": sys.version.split()[0], "load_before": load_before, "load_after": load_after,
        "event_bytes": len(sse_server.EVENT % (cfg.events // 2, time.time())),
        "modes": modes, "ratios": ratios,
        "target_c_over_b": TARGET_C_OVER_B,
        "target_met": ratios["c/b"]["median"] >= TARGET_C_OVER_B,
        "recording_lost_events": lost,
    }
    if long_runs:
        streams = []
        for run in long_runs:
            marks = [x for x in run.samples if x["at"] not in ("start", "drained")]
            first = marks[0]["total"] if marks else run.samples[0]["total"]
            last_mark = marks[-1]["total"] if marks else first
            growth = last_mark - first
            # Flat: from the first mark (10 % in, past start-up allocations) to the last, RSS
            # grew less than 10 % -- memory proportional to the stream shows far above that.
            # If the recorder fell behind on the way (peak backlog over 1 % of the stream),
            # RSS holds those rows and allocators keep their high-water mark: said so, rather
            # than called a leak.
            if growth < 0.10 * max(first, 1):
                verdict = "flat"
            elif run.peak["backlog_rows"] > 0.01 * run.events:
                verdict = "grows with backlog"
            else:
                verdict = "GROWS"
            streams.append({
                "label": run.label, "rate": run.rate, "events": run.events,
                "seconds": round(run.seconds, 2), "eps": round(run.eps),
                "drain_s": None if run.drain_s is None else round(run.drain_s, 2),
                "samples": run.samples,
                "rss_growth_kb_first_to_last_mark": growth,
                "peak": run.peak,
                "verdict": verdict, "flat": verdict == "flat",
                "cpu_us_per_event": run.cpu_us_per_event, "others_cpu_pct": run.others_cpu_pct,
            })
        summary["long_stream"] = {"streams": streams, "capture": long_capture}
        summary["recording_lost_events"] += (long_capture or {}).get("events_lost") or 0
    return summary


def print_table(summary: dict[str, Any]) -> None:
    cfg = summary["config"]
    modes = summary["modes"]
    print()
    print(f"SSE stream benchmark: {cfg['events']} events x {cfg['rounds']} rounds, "
          f"{summary['event_bytes']}-byte events, {cfg['group']} event(s) per write"
          + (f" in HTTP chunks of <= {cfg['split']} B" if cfg["split"] else "") + ", "
          f"ping every {cfg['ping']}, paced {cfg['paced_events']} @ {cfg['paced_rate']:.0f} ev/s; "
          f"{summary['ncpu']} CPUs, load {summary['load_before']} -> {summary['load_after']}")
    rec = summary["recorder"]
    print(f"recorder: {rec.get('path')}" + (f" at {rec['commit']}" if rec.get("commit") else "")
          + (f", uncommitted {', '.join(rec['uncommitted'])}" if rec.get("uncommitted") else ""))
    header = (f"{'mode':<16} {'events/s (median)':>17}  {'per round':<26} {'burst p50/p99 ms':>17}"
              f"  {'paced p50/p99 ms':>16}  {'RSS before/peak/after MB':>24}")
    print(header)
    print("-" * len(header))
    for mode in MODES:
        m = modes[mode]
        rounds = " ".join(f"{v:,}" for v in m["eps_rounds"])
        rss = ""
        if m.get("rss_kb_rounds"):
            # Medians over rounds; for ssetap the sum of proxy and worker processes.
            before = _median([r["before"].get("total", 0) for r in m["rss_kb_rounds"]])
            peak = _median([r["peak"].get("total", 0) for r in m["rss_kb_rounds"]])
            after = _median([r["after"].get("total", 0) for r in m["rss_kb_rounds"]])
            rss = f"{_mb(int(before))}/{_mb(int(peak))}/{_mb(int(after))}"
        bl, pl = m["burst_latency_ms"], m["paced_latency_ms"]
        print(f"{MODE_LABEL[mode]:<16} {m['eps_median']:>17,}  {rounds:<26} "
              f"{bl['p50']:>8.2f}/{bl['p99']:<8.2f} {pl['p50']:>7.2f}/{pl['p99']:<8.2f} {rss:>24}")
    r = summary["ratios"]
    verdict = "met" if summary["target_met"] else "MISSED"
    print()
    print("ratios (median of per-round ratios): "
          + "  ".join(f"{k} {v['median']:.3f} ({' '.join(f'{x:.2f}' for x in v['rounds'])})"
                      for k, v in r.items() if k in ("b/a", "c/a", "c/b"))
          + f"   target c/b >= {summary['target_c_over_b']}: {verdict}")
    q = r["c/b quiet"]
    print(f"c/b over quiet rounds only (others' CPU <= {QUIET_OTHERS_PCT:.0f}% during b and c): "
          + (f"{q['median']:.3f} ({' '.join(f'{x:.2f}' for x in q['rounds'])})" if q["rounds"]
             else "no quiet round"))
    pc = r["proxy cpu c/b"]["median"]
    print(f"proxy-process CPU per event, c/b: {pc if pc is None else f'{pc:.2f}'} "
          "(the tap's cost inside the proxy; a CPU-starved proxy also reads bigger batches, "
          "which lowers it)")
    print()
    print("CPU us per event, burst, median over rounds (proxy.main = event-loop thread, "
          "*.threads = helper threads; worker counted until it caught up):")
    for mode in MODES:
        cpu = modes[mode]["cpu_us_per_event_median"]
        print(f"  {MODE_LABEL[mode]:<16} " + "  ".join(f"{k} {v:.1f}" for k, v in cpu.items())
              + (f"   | proxy busy {modes[mode]['proxy_busy_pct_rounds']} %" if mode != "direct"
                 else "")
              + f"   | others' CPU {modes[mode]['others_cpu_pct_rounds']} %")
    s = modes["ssetap"]
    print()
    print("ssetap record RSS per round (proxy + worker, MB, before/peak/after):  "
          + "  ".join(f"{_mb(x['before'].get('proxy', 0))}+{_mb(x['before'].get('worker', 0))}/"
                      f"{_mb(x['peak'].get('proxy', 0))}+{_mb(x['peak'].get('worker', 0))}/"
                      f"{_mb(x['after'].get('proxy', 0))}+{_mb(x['after'].get('worker', 0))}"
                      for x in s["rss_kb_rounds"]))
    print(f"ssetap drain after the client got the last event (s): {s['drain_s_rounds']}; "
          f"exit codes {s['exit_codes']}")
    for i, cap in enumerate(s["capture_rounds"], 1):
        if cap:
            print(f"capture round {i}: {cap['events_recorded']}/{cap['events_expected']} events "
                  f"in {cap['streams_recorded']}/{cap['streams_expected']} streams, "
                  f"{cap['messages_recorded']} messages, lost {cap['events_lost']}"
                  + (f", MISMATCHES {cap['mismatches']}" if cap["mismatches"] else ""))
    long = summary.get("long_stream")
    if long:
        for run in long["streams"]:
            print()
            print(f"long stream ({run['label']}) through ssetap record: {run['events']} events in "
                  f"{run['seconds']} s = {run['eps']:,} ev/s; capture caught up {run['drain_s']} s "
                  f"after the last event")
            print(f"  {'sample':<18} {'t s':>6} {'rows in capture':>15} {'rows behind':>11} "
                  f"{'proxy MB':>9} {'worker MB':>10} {'total MB':>9}")
            for smp in run["samples"]:
                print(f"  {smp['at']:<18} {smp['t']:>6} {smp['recorded_rows']:>15} "
                      f"{smp['backlog_rows']:>11} {_mb(smp['proxy']):>9} {_mb(smp['worker']):>10} "
                      f"{_mb(smp['total']):>9}")
            pk = run["peak"]
            print(f"  sampled every 2 %: peak backlog {pk['backlog_rows']} rows (at "
                  f"{pk['backlog_at']} events), peak RSS {_mb(pk['total'])} MB (at "
                  f"{pk['total_at']} events)")
            print(f"  RSS growth first -> last mark: "
                  f"{run['rss_growth_kb_first_to_last_mark'] / 1024:.1f} MB "
                  f"({run['verdict']}); CPU us/event: "
                  + "  ".join(f"{k} {v:.1f}" for k, v in run["cpu_us_per_event"].items())
                  + f"   | others' CPU {run['others_cpu_pct']} %")
        cap = long["capture"] or {}
        print(f"  long-stream capture: {cap.get('events_recorded')}/{cap.get('events_expected')} "
              f"events, lost {cap.get('events_lost')}, recorder exit {cap.get('exit_code')}")
    for name, prof in summary.get("profiles", {}).items():
        print()
        print(f"py-spy {name} ({prof.get('samples')} samples at 250 Hz, "
              f"{prof.get('eps_under_profiler'):,} ev/s under the profiler), threads "
              f"{prof.get('threads_pct')}; top self time:")
        for frame, pct in prof.get("top_self_pct", []):
            print(f"  {pct:5.1f}%  {frame}")
    print()
    print(f"recording lost {summary['recording_lost_events']} events; total {summary['seconds']} s")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, help="events per burst (default 20000, quick 2000)")
    parser.add_argument("--rounds", type=int,
                        help="interleaved rounds of a, b, c (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="a ~6 s smoke run")
    parser.add_argument("--long", type=int, help="events in the long-stream phase "
                        "(default 200000, quick 5000; 0 skips it)")
    parser.add_argument("--long-rate", type=float,
                        help="events/s of the paced long stream, run before the long burst "
                        "(default 5000; 0 skips it)")
    parser.add_argument("--paced-events", type=int, help="events per paced stream "
                        "(default 2000, quick 300)")
    parser.add_argument("--paced-rate", type=float, default=2000.0,
                        help="events/s of the paced stream (default 2000)")
    parser.add_argument("--ping", type=int, default=500, help="a `: ping` comment every N events")
    parser.add_argument("--group", type=int, default=1, help="events per server write (default 1)")
    parser.add_argument("--split", type=int, default=0,
                        help="cut each server write into HTTP chunks of at most N bytes")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, captures)")
    parser.add_argument("--recorder-path", default="",
                        help="run `ssetap record` with the `recorder` package found in this "
                        "directory (a patched checkout, to A/B a change); default: the "
                        "installed one")
    parser.add_argument("--profile", action="store_true",
                        help="finally, one extra (unmeasured) burst through mitmdump and one "
                        "through ssetap under py-spy; writes collapsed stacks to bench/results/ "
                        "and prints the top functions")
    args = parser.parse_args(argv)
    quick = args.quick
    cfg = Config(
        events=args.events or (2000 if quick else 20000),
        rounds=args.rounds or (1 if quick else 3),
        long=args.long if args.long is not None else (5000 if quick else 200000),
        long_rate=args.long_rate if args.long_rate is not None else 5000.0,
        paced_events=args.paced_events or (300 if quick else 2000),
        paced_rate=args.paced_rate, ping=args.ping, group=args.group, split=args.split,
    )
    if cfg.events < WARMUP_EVENTS or cfg.rounds < 1 or cfg.paced_rate <= 0 or cfg.group < 1:
        parser.error(f"need --events >= {WARMUP_EVENTS}, --rounds >= 1, --paced-rate > 0, "
                     "--group >= 1")
    return cfg, args


async def amain(cfg: Config, keep: bool, profile: bool) -> dict[str, Any]:
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="ssetap-bench-"))
    load_before = loadavg()
    progress(f"start: {cfg.events} events x {cfg.rounds} rounds, long {cfg.long}; load "
             f"{load_before}; temp {tmp}")
    runs: list[ModeRun] = []
    long_runs: list[LongRun] = []
    long_capture: dict[str, Any] | None = None
    profiles: dict[str, Any] = {}
    try:
        server, server_port = await start_server(procs, tmp)
        long_proxy: Proxy | None = None
        for rnd in range(1, cfg.rounds + 1):
            # Both proxies of a round start together, before anything is measured (start-up
            # is ~1 s of CPU each); an idle proxy costs nothing measurable while another runs.
            starting = [start_mitmdump(procs, tmp, server_port, f"r{rnd}"),
                        start_ssetap(procs, tmp, server_port, f"r{rnd}")]
            if rnd == cfg.rounds and cfg.long:
                starting.append(start_ssetap(procs, tmp, server_port, "long"))
            started = await asyncio.gather(*starting)
            proxies: dict[str, Proxy | None] = {"direct": None, "mitmdump": started[0],
                                                "ssetap": started[1]}
            if len(started) > 2:
                long_proxy = started[2]
            for mode in MODES:
                runs.append(await run_mode(mode, rnd, cfg, proxies[mode], server, server_port))
        if long_proxy is not None:
            long_runs, long_capture = await run_long(cfg, long_proxy, server)
        if profile:
            profiles = await run_profile(cfg, procs, tmp, server_port)
    finally:
        procs.cleanup()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = summarise(cfg, runs, long_runs, long_capture, load_before, loadavg(),
                        time.monotonic() - T0)
    if profiles:
        summary["profiles"] = profiles
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    global RECORDER_PATH
    cfg, args = parse_args(argv)
    if args.recorder_path:
        if not (Path(args.recorder_path) / "recorder" / "addon.py").exists():
            print(f"bench: error: no recorder/addon.py under {args.recorder_path}", file=sys.stderr)
            return 2
        RECORDER_PATH = str(Path(args.recorder_path).resolve())
    try:
        summary = asyncio.run(amain(cfg, args.keep, args.profile))
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    print_table(summary)
    line = json.dumps(summary, separators=(",", ":"))
    print(line)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(line + "\n")
    return 0 if summary["recording_lost_events"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
