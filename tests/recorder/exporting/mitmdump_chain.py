"""A real `mitmdump -w FILE --set hardump=FILE.har` in front of `ssetap record`, for imports.

The chain is client -> mitmdump (reverse proxy, writing its flow file and HAR) -> ssetap record
-> the demo server, so one SDK session yields a recording and the two foreign files of it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mitmdump:
    """mitmdump in reverse mode on an ephemeral loopback port."""

    def __init__(self, upstream: str, flows: Path, har: Path) -> None:
        self.port = free_port()
        code = "import sys; from mitmproxy.tools.main import mitmdump; sys.exit(mitmdump())"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--mode", f"reverse:{upstream}", "--listen-host",
             "127.0.0.1", "--listen-port", str(self.port), "-w", str(flows), "--set",
             f"hardump={har}", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mitmdump exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("mitmdump did not listen")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # mitmdump writes the HAR at shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
