"""The phases of `bench/stream_bench.py`: one mode's round (warm-up, burst, paced stream,
capture check), the long streams, and the py-spy profile."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_client import StreamResult, fetch
from stream_harness import (
    MODE_LABEL,
    RESULTS_FILE,
    WARMUP_EVENTS,
    BenchError,
    Config,
    Processes,
    Proxy,
    cpu_report,
    cpu_snapshot,
    cpu_window,
    loadavg,
    log_tail,
    mb,
    pcts,
    progress,
    recorded_rows,
    start_mitmdump,
    start_ssetap,
    stop_proxy,
    venv_tool,
    verify_capture,
    wait_recorded,
)


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
    # Over the burst itself: cores each process used, and the share of the burst it was
    # ready to run but had no CPU (what tells a CPU-starved proxy from a slow one).
    cores: dict[str, float] = field(default_factory=dict)
    waited_pct: dict[str, float] = field(default_factory=dict)


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
            raise BenchError(f"ssetap did not record the warm-up stream:\n{log_tail(proxy.log)}")
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
    window = cpu_window(cpu_a, cpu_b, cfg.events)
    cpu, others = window.per_event, window.others_pct
    if proxy:
        proxy.streams.append((cfg.events, _comments(cfg.events, cfg.ping)))
        sample(0)
        if proxy.kind == "ssetap":
            drain = await wait_recorded(proxy, 120)
            if drain is None:
                raise BenchError(f"ssetap did not record the burst in 120 s:\n{log_tail(proxy.log)}")
            # The worker's CPU counts until it caught up: that is its real cost per event.
            cpu_b.procs["worker"] = cpu_snapshot({"worker": proxy.worker_pid}).procs["worker"]
            cpu, _ = cpu_report(cpu_a, cpu_b, cfg.events)
    rss_after = proxy.rss() if proxy else {}

    paced = await fetch(port, cfg, n=cfg.paced_events, rate=cfg.paced_rate)
    _check(paced, cfg.paced_events, f"{mode} paced")
    run = ModeRun(mode, rnd, cfg.events, burst.seconds, burst.eps, burst.latencies,
                  paced.latencies, cpu, others, load1, rss_before, peak, rss_after, drain,
                  cores=window.cores, waited_pct=window.waited_pct)
    if proxy:
        proxy.streams.append((cfg.paced_events, _comments(cfg.paced_events, cfg.ping)))
        if proxy.kind == "ssetap" and await wait_recorded(proxy, 60) is None:
            raise BenchError(f"ssetap did not record the paced stream:\n{log_tail(proxy.log)}")
        run.exit_code = await stop_proxy(proxy)
        if proxy.kind == "ssetap":
            # 3: the recorder shed part of the burst (recorded as gaps, checked below).
            if run.exit_code not in (0, 3):
                raise BenchError(f"ssetap record exited {run.exit_code}:\n{log_tail(proxy.log)}")
            run.capture = verify_capture(proxy)
            if run.exit_code == 3 and not run.capture["events_shed"]:
                raise BenchError(f"ssetap record exited 3 with nothing shed:\n{log_tail(proxy.log)}")

    lat = pcts(burst.latencies)
    plat = pcts(paced.latencies)
    extra = ""
    if proxy:
        extra = (f" | RSS {mb(rss_before.get('total', 0))}->{mb(peak.get('total', 0))}"
                 f"->{mb(rss_after.get('total', 0))} MB")
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
    progress("    cores used in the burst: " + " ".join(f"{k} {v:.2f}" for k, v in window.cores.items())
             + " | ready but waiting for a CPU: "
             + " ".join(f"{k} {v:.0f}%" for k, v in window.waited_pct.items()))
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
                 f"({backlog} behind), RSS proxy {mb(rss['proxy'])} + worker "
                 f"{mb(rss['worker'])} = {mb(rss['total'])} MB")

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
             f"RSS then {mb(samples[-1]['total'])} MB | others {others:.0f}%")
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
    proc = procs.spawn([venv_tool("py-spy"), "record", "--pid", str(pid), "--rate", "250",
                        "--format", "raw", "--nolineno", "--threads", "--nonblocking",
                        "--output", str(out)], log)
    deadline = time.monotonic() + 10
    while "Sampling process" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"py-spy did not attach to {pid}:\n{log_tail(log)}")
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
