"""Recording helpers for replay tests that need no particular SDK generation.

`record_capture` runs a real `ssetap record` subprocess in front of any upstream and lets a
caller drive it; the mcp>=2 tests use it with their peer, the v1 tests through replay_helpers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Tests that are not about latency allow for a loaded machine (the default is 2x+250ms).
LENIENT = "2x+1s"
_LISTENING = re.compile(r"listening on (http://\S+?)(?: |;|$)")


def record_capture(db: Path, upstream: str, drive: Callable[[str], Any],
                   timeout: float = 30.0) -> None:
    """Run `ssetap record` in front of `upstream`, call `drive(proxy_url)`, stop it cleanly."""
    cmd = [sys.executable, "-m", "recorder.cli", "record", "--upstream", upstream,
           "--listen", "127.0.0.1:0", "--db", str(db), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env, cwd=ROOT)
    lines: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(timeout) or not found:
            raise RuntimeError(f"ssetap record did not start: {''.join(lines)}")
        drive(found[0])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        raise RuntimeError(f"ssetap record exited {code}: {''.join(lines)}")
