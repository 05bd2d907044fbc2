"""`ssetap demo`: a bundled server, the recorder in front of it, a scripted SDK client.

Everything is real: the official SDK's server and client, and `ssetap record` as a child
process, all on loopback with free ports. The demo shortens the server's heartbeat to 0.5 s so
a short session still shows heartbeat comments.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from recorder import report
from recorder.store import Capture, StoreError

_LISTENING = re.compile(r"listening on (http://\S+?)(?: |;|$)")
TRANSPORTS = {"sse": "/sse", "streamable-http": "/mcp"}


class DemoError(Exception):
    """The demo could not run (the recorder did not start, the client failed)."""


def _start_recorder(db: Path, upstream: str) -> tuple[subprocess.Popen[str], str]:
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "recorder.cli", "record", "--upstream", upstream, "--listen",
         "127.0.0.1:0", "--db", str(db)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True, env=env)
    found: list[str] = []
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip())
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
            elif "[" in line and "]" in line and found:
                print("  " + line.rstrip(), file=sys.stderr)  # live flags
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(20) or not found:
        proc.kill()
        raise DemoError("the recorder did not start: " + " / ".join(lines[-3:]))
    return proc, found[0]


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def record_demo(db: Path, transports: list[str], *, quiet: bool = False,
                json_response: bool = False, stateless: bool = False,
                ping_interval: float = 0.5) -> None:
    """Record one scripted session per transport into `db`."""
    from recorder.demo_client import run_script
    from recorder.demo_server import start_server

    # The SDK server logs a traceback when a client closes its GET stream (a known quirk of
    # mcp 1.x, harmless); the demo's console is for the demo.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.CRITICAL)
    # SDK v2 logs a traceback for every tool that raises; the demo's `fail` tool does on purpose.
    logging.getLogger("mcp.server").setLevel(logging.CRITICAL)

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    from recorder import sdk

    say(f"ssetap demo: using {sdk.describe()}")
    for transport in transports:
        server = start_server(transport, ping_interval=ping_interval,  # type: ignore[arg-type]
                              json_response=json_response, stateless=stateless)
        try:
            proc, proxy_url = _start_recorder(db, server.url)
            try:
                say(f"ssetap demo: {transport}: server {server.url}, recorder {proxy_url}")
                summary = asyncio.run(run_script(
                    proxy_url + TRANSPORTS[transport], transport,  # type: ignore[arg-type]
                    log=(lambda line: say("  " + line))))
                if summary.get("errors"):
                    raise DemoError(f"the demo client failed: {summary['errors'][0]}")
            finally:
                _stop(proc)
        finally:
            server.stop()


def run_demo(db: str, transport: str) -> int | None:
    """Record the demo and print its summary; returns the last session's id (None on failure)."""
    path = Path(db)
    transports = list(TRANSPORTS) if transport == "both" else [transport]
    try:
        record_demo(path, transports)
        with Capture(path) as capture:
            sessions = capture.sessions()
    except (DemoError, StoreError) as exc:
        print(f"ssetap: error: {exc}", file=sys.stderr)
        return None
    print()
    print(report.sessions_table(sessions))
    last = sessions[-1]["id"] if sessions else 1
    print(f"""
Explore the capture:
  ssetap sessions {db}
  ssetap show {db} {last}
  ssetap check {db}
  ssetap browse {db}
  sqlite-utils {db} "select method, name, latency_ms, outcome from calls"
""")
    return int(last)
