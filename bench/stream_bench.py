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
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# bench/ is on sys.path when this file runs as a script: its modules import each other by name.
from stream_harness import (
    MODES,
    RESULTS_FILE,
    T0,
    WARMUP_EVENTS,
    BenchError,
    Config,
    Processes,
    Proxy,
    loadavg,
    progress,
    start_mitmdump,
    start_server,
    start_ssetap,
)
from stream_phases import LongRun, ModeRun, run_long, run_mode, run_profile
from stream_report import print_table, summarise


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


async def amain(cfg: Config, keep: bool, profile: bool, recorder_path: str = "") -> dict[str, Any]:
    procs = Processes(recorder_path)
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
                        time.monotonic() - T0, recorder_path)
    if profiles:
        summary["profiles"] = profiles
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    recorder_path = ""
    if args.recorder_path:
        if not (Path(args.recorder_path) / "recorder" / "addon.py").exists():
            print(f"bench: error: no recorder/addon.py under {args.recorder_path}", file=sys.stderr)
            return 2
        recorder_path = str(Path(args.recorder_path).resolve())
    try:
        summary = asyncio.run(amain(cfg, args.keep, args.profile, recorder_path))
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
