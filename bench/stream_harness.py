"""The process harness of `bench/stream_bench.py`: its settings, the processes it starts
(SSE server, bare mitmdump, `ssetap record`), what /proc says about them, and what the
captures hold."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


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


class BenchError(Exception):
    """Something the benchmark cannot go on without (a process that did not start...)."""


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


def _schedstat(path: str) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of a thread, from its schedstat."""
    try:
        with open(path, "rb") as f:
            run, wait, _ = f.read().split()
    except (OSError, ValueError):
        return None
    return int(run), int(wait)


def cpu_ns(pid: int) -> tuple[int, int, int]:
    """(main thread's CPU, whole process's CPU, whole process's run-queue wait), in ns.

    The main thread of the proxy runs the event loop; the rest are helper threads (ssetap's
    sender, the worker's SQLite writer). From schedstat (exact to the nanosecond) where the
    kernel has it: utime + stime count 10 ms ticks, and a 20k-event burst costs the sender
    thread only a few of them. The run-queue wait says how long a process was ready to run
    but had no CPU (two cores shared by client, server, proxy, worker and other people).
    """
    main = _schedstat(f"/proc/{pid}/task/{pid}/schedstat")
    if main is None:
        tick = 10**9 // CLK_TCK
        return (_stat_ticks(f"/proc/{pid}/task/{pid}/stat") * tick,
                _stat_ticks(f"/proc/{pid}/stat") * tick, 0)
    run = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tasks = []
    for task in tasks:
        stat = _schedstat(f"/proc/{pid}/task/{task}/schedstat")
        if stat is not None:
            run += stat[0]
            wait += stat[1]
    return main[0], run, wait


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
    procs: dict[str, tuple[int, int, int]]


def cpu_snapshot(pids: dict[str, int | None]) -> CpuSnapshot:
    return CpuSnapshot(time.monotonic(), system_busy_ticks(),
                       {name: cpu_ns(pid) for name, pid in pids.items() if pid is not None})


@dataclass
class CpuReport:
    """What a measured window cost, from two snapshots."""

    per_event: dict[str, float]  # CPU us per event, per process (and main/helper threads)
    cores: dict[str, float]  # CPU used over the window, in cores, per process
    waited_pct: dict[str, float]  # share of the window a process was ready but had no CPU
    others_pct: float  # the machine's CPU used by processes that are not ours, in percent


def cpu_window(a: CpuSnapshot, b: CpuSnapshot, events: int) -> CpuReport:
    wall = max(b.wall - a.wall, 1e-9)
    per_event: dict[str, float] = {}
    cores: dict[str, float] = {}
    waited: dict[str, float] = {}
    ours = 0
    scale = 1e-3 / max(events, 1)
    for name, (main_b, total_b, wait_b) in b.procs.items():
        main_a, total_a, wait_a = a.procs.get(name, (main_b, total_b, wait_b))
        total = total_b - total_a
        ours += total
        per_event[name] = round(total * scale, 2)
        cores[name] = round(total / 1e9 / wall, 2)
        waited[name] = round(100.0 * (wait_b - wait_a) / 1e9 / wall, 1)
        if name in ("proxy", "worker"):
            per_event[f"{name}.main"] = round((main_b - main_a) * scale, 2)
            # Thread and process files are read one after the other: clamp the jitter.
            per_event[f"{name}.threads"] = round(max(total - (main_b - main_a), 0) * scale, 2)
    busy_ns = (b.system - a.system) * 1e9 / CLK_TCK
    others = max(0.0, (busy_ns - ours) / (wall * 1e9 * NCPU) * 100.0)
    return CpuReport(per_event, cores, waited, round(others, 1))


def cpu_report(a: CpuSnapshot, b: CpuSnapshot, events: int) -> tuple[dict[str, float], float]:
    """CPU microseconds per event for each of our processes (and main/other threads), and
    the share of the machine's CPU used by processes that are not ours, in percent."""
    window = cpu_window(a, b, events)
    return window.per_event, window.others_pct


# --- formatting -------------------------------------------------------------------------------


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def pcts(latencies: Iterable[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds (nearest rank)."""
    values = sorted(latencies)
    if not values:
        return (float("nan"), float("nan"))

    def rank(q: float) -> float:
        return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))] * 1000.0

    return rank(0.50), rank(0.99)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- processes --------------------------------------------------------------------------------


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

    def __init__(self, recorder_path: str = "") -> None:
        # --recorder-path: a directory holding another `recorder` package to measure.
        self.recorder_path = recorder_path
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


def venv_tool(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    if not candidate.exists():
        raise BenchError(f"{name} not found next to {sys.executable}; run with the project's venv")
    return str(candidate)


def log_tail(path: Path, lines: int = 15) -> str:
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
        raise BenchError(f"the SSE server did not start:\n{log_tail(tmp / 'server.log')}")
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
    raise BenchError(f"{what} did not start listening (exit {proc.poll()}):\n{log_tail(log)}")


async def start_mitmdump(procs: Processes, tmp: Path, upstream: int, tag: str) -> Proxy:
    log = tmp / f"mitmdump-{tag}.log"
    proc = procs.spawn([venv_tool("mitmdump"), "-q",
                        "--mode", f"reverse:http://127.0.0.1:{upstream}",
                        "--listen-host", "127.0.0.1", "--listen-port", "0",
                        "-s", str(HERE / "stream_addon.py")], log)
    return Proxy("mitmdump", proc, await _wait_port(proc, log, "mitmdump"), log)


async def start_ssetap(procs: Processes, tmp: Path, upstream: int, tag: str) -> Proxy:
    log = tmp / f"ssetap-{tag}.log"
    db = tmp / f"capture-{tag}.db"
    env = None
    if procs.recorder_path:
        # A/B a patched checkout: PYTHONPATH comes before the venv's editable install, and the
        # recorder passes its own root on to the worker process.
        env = dict(os.environ)
        env["PYTHONPATH"] = procs.recorder_path + os.pathsep + env.get("PYTHONPATH", "")
    proc = procs.spawn([venv_tool("ssetap"), "record",
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


# --- captures ---------------------------------------------------------------------------------


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
