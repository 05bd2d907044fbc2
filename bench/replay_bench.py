"""Benchmark: `ssetap replay` of a >= 1,000-call capture vs a plain SDK client making the same calls.

    /work/venv/bin/python bench/replay_bench.py [--calls 1000] [--transport streamable-http]
                                                [--rounds 3] [--keep DB]

Records the capture once through a real `ssetap record` proxy (not timed), then times, in
alternating rounds against the same local FastMCP server: the official SDK client making the
same calls directly, and ssetap's replay of the capture (fresh ids and session, every response
diffed against the recording). Prints both medians and the ratio replay / SDK (target <= 1.2).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from recorder.demo_server import build_server
from replay.engine import ReplayOptions, replay_async
from replay.mock import AppServer
from replay.verdict import LatencyLimit


def calls_for(n: int) -> list[tuple[str, dict[str, Any]]]:
    """The workload: small tool calls, like a chatty agent's."""
    out = []
    for i in range(n):
        if i % 2:
            out.append(("add", {"a": i, "b": 1}))
        else:
            out.append(("echo", {"text": f"message {i}"}))
    return out


async def sdk_client(url: str, transport: str, calls: list[tuple[str, dict[str, Any]]]) -> None:
    if transport == "sse":
        opener: Any = sse_client(url)
    else:
        opener = streamable_http_client(url)
    async with opener as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            if result.isError:
                raise RuntimeError(f"{name} failed: {result.content}")


def record(db: Path, upstream: str, path: str, transport: str,
           calls: list[tuple[str, dict[str, Any]]]) -> None:
    cmd = [sys.executable, "-m", "recorder.cli", "record", "--upstream", upstream, "--listen",
           "127.0.0.1:0", "--db", str(db), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            match = re.search(r"listening on (http://\S+?)(?: |;|$)", line)
            if match and not found:
                found.append(match.group(1))
            ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(30) or not found:
            raise RuntimeError("ssetap record did not start")
        asyncio.run(sdk_client(found[0] + path, transport, calls))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--transport", choices=["streamable-http", "sse"],
                        default="streamable-http")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", metavar="DB", help="write the capture here and keep it")
    args = parser.parse_args()

    mcp = build_server()
    app = mcp.sse_app() if args.transport == "sse" else mcp.streamable_http_app()
    server = AppServer(app, lifespan="on").start()
    path = "/sse" if args.transport == "sse" else "/mcp"
    url = server.url + path
    calls = calls_for(args.calls)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.keep) if args.keep else Path(tmp) / "bench.db"
        try:
            started = time.perf_counter()
            record(db, server.url, path, args.transport, calls)
            print(f"recorded {args.calls} calls ({args.transport}) through ssetap record in "
                  f"{time.perf_counter() - started:.1f} s -> {db}")
            sdk_times: list[float] = []
            replay_times: list[float] = []
            # Speed is measured here, not regressions: a load spike must not abort the run.
            options = ReplayOptions(latency=LatencyLimit(None, None))
            for round_number in range(1, args.rounds + 1):
                started = time.perf_counter()
                asyncio.run(sdk_client(url, args.transport, calls))
                sdk_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                result = asyncio.run(replay_async(db, url, options=options))
                replay_times.append(time.perf_counter() - started)
                replayed = sum(len(s.calls) for s in result.sessions)
                if not result.ok:
                    print(f"replay found differences: {result.counts()}", file=sys.stderr)
                    return 1
                print(f"round {round_number}: sdk client {sdk_times[-1]:.3f} s, "
                      f"ssetap replay {replay_times[-1]:.3f} s ({replayed} calls, all match)")
        finally:
            server.stop()
    sdk = statistics.median(sdk_times)
    replay = statistics.median(replay_times)
    print(f"median over {args.rounds} rounds, {args.calls} tools/call + initialize:")
    print(f"  plain SDK client : {sdk:.3f} s ({sdk / args.calls * 1000:.2f} ms/call)")
    print(f"  ssetap replay    : {replay:.3f} s ({replay / args.calls * 1000:.2f} ms/call)")
    print(f"  ratio replay/sdk : {replay / sdk:.2f}x (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
