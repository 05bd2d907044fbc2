"""A real OpenTelemetry backend for the tests: Arize Phoenix from PyPI, on loopback.

Phoenix lives in its own venv (about 800 MB, built once per machine by `.ci/phoenix.sh`); the
tests find its interpreter in SSETAP_PHOENIX_PYTHON and skip, saying so, when it is unset.
It is started with its HTTP server on 127.0.0.1 and an ephemeral port, its data in a temporary
directory, telemetry off. Phoenix binds its OTLP/gRPC port on every interface with no setting
to change that, so the launcher below rewrites that one bind to 127.0.0.1 (the tests push
over OTLP/HTTP to `/v1/traces` and never use gRPC).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.recorder.exporting.mitmdump_chain import free_port

ENV_VAR = "SSETAP_PHOENIX_PYTHON"

_LAUNCHER = """
import sys
from grpc.aio import _server
_add = _server.Server.add_insecure_port
def _loopback(self, address):
    return _add(self, address.replace("[::]:", "127.0.0.1:"))
_server.Server.add_insecure_port = _loopback
from phoenix.server.main import main
sys.argv = ["phoenix", "serve"]
sys.exit(main())
"""


class Phoenix:
    """A running Phoenix server; `spans()` reads back what it stored."""

    def __init__(self, python: str, workdir: Path, *, timeout: float = 180.0) -> None:
        self.port = free_port()
        grpc_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(PHOENIX_HOST="127.0.0.1", PHOENIX_PORT=str(self.port),
                   PHOENIX_GRPC_PORT=str(grpc_port), PHOENIX_WORKING_DIR=str(workdir),
                   # No calls out: no telemetry, no assistant that browses.
                   PHOENIX_TELEMETRY_ENABLED="false", PHOENIX_DISABLE_AGENT_ASSISTANT="true",
                   PHOENIX_AGENTS_DISABLE_WEB_ACCESS="true", DO_NOT_TRACK="1")
        self.log = workdir / "phoenix.log"
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen([python, "-c", _LAUNCHER], env=env, cwd=workdir,
                                     stdout=self._log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"phoenix exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"phoenix did not start in {timeout} s: {self.log.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self, project: str = "default") -> list[dict[str, Any]]:
        """Every span of a project, all pages."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            response = httpx.get(f"{self.url}/v1/projects/{project}/spans", params=params,
                                 timeout=30, trust_env=False)
            if response.status_code == 404:
                return out
            response.raise_for_status()
            body = response.json()
            out += body["data"]
            cursor = body.get("next_cursor")
            if not cursor:
                return out

    def wait_for_spans(self, predicate: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Spans once `predicate(spans)` holds (Phoenix inserts in the background)."""
        deadline = time.monotonic() + timeout
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            spans = self.spans()
            if predicate(spans):
                return spans
            time.sleep(0.5)
        raise AssertionError(f"phoenix did not get the spans in {timeout} s; it has "
                             f"{len(spans)}: {sorted({s['name'] for s in spans})}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_file.close()
