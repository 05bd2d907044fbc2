"""The mitmproxy addon: taps every HTTP exchange and ships it to the recording process.

Use it inside `ssetap record`, or on its own:
    mitmdump -s recorder/addon.py --set ssetap_db=capture.db

Design notes:
- Every response is streamed (`flow.response.stream` set in `responseheaders`), so SSE bytes
  reach the client as soon as the server writes them, byte for byte. The tap appends
  (flow, time, bytes) to a deque and returns the bytes unchanged: O(1) on the event loop.
- A sender thread ships the deque in batches to `recorder.worker`, a separate process, which
  does all parsing and writing. If that process dies, recording stops with one log line;
  traffic keeps flowing.
- Forwarded traffic is never modified; redaction happens on the stored copy in the worker.
"""

from __future__ import annotations

import logging
import marshal
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Loaded by `mitmdump -s path/to/recorder/addon.py`: make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import ctx, exceptions, http

log = logging.getLogger("ssetap")

SEND_INTERVAL = 0.01
# flow.metadata key set by an addon that answers a request itself (recorder.fault_addon).
PROXY_ANSWERED = "ssetap_proxy_answered"
MAX_FRAME_EVENTS = 2000


def _client_addr(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return f"{peer[0]}:{peer[1]}" if peer else ""


class WorkerLink:
    """Ships batches of raw events to a `recorder.worker` process over its stdin."""

    def __init__(self, db: str, raw: bool, config: str, redact_paths: str = "",
                 otlp: str = "") -> None:
        env = dict(os.environ)
        env.pop("SSETAP_OTLP", None)
        if otlp:
            env["SSETAP_OTLP"] = otlp  # recorder.otlp_push.ENV_VAR: not in argv (auth headers)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        # -P: do not put the current directory first on sys.path, or a `recorder` package in
        # the user's working directory would be run as the worker instead of this one.
        cmd = [sys.executable, "-P", "-m", "recorder.worker", "--db", db, "--config", config]
        if raw:
            cmd.append("--raw")
        if redact_paths:
            cmd += ["--redact-paths", redact_paths]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env, bufsize=0)
        self.queue: deque[tuple[Any, ...]] = deque()
        self._stop = threading.Event()
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="ssetap-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SEND_INTERVAL):
            self._send()
        self._send()

    def _send(self) -> None:
        queue = self.queue
        assert self.proc.stdin is not None
        # Frames are capped: while the worker is behind, the backlog stays here as raw tuples
        # (~0.3-0.5 KB an event) and the worker takes it a frame at a time, instead of one
        # frame of the whole backlog that the worker would unpack into rows all at once.
        while queue and not self._broken:
            count = min(len(queue), MAX_FRAME_EVENTS)
            batch = [queue.popleft() for _ in range(count)]
            frame = marshal.dumps(batch)
            try:
                self.proc.stdin.write(len(frame).to_bytes(4, "big") + frame)
            except (BrokenPipeError, OSError) as exc:
                self._broken = True
                log.error(f"ssetap: the recording process stopped ({exc}); traffic still "
                          "flows, but is no longer recorded")

    def close(self, timeout: float = 60.0) -> int | None:
        self._stop.set()
        self._thread.join()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


class Recorder:
    """Records every HTTP exchange, with streamed bodies, into an ssetap capture."""

    def __init__(self) -> None:
        self.link: WorkerLink | None = None
        self._db: str | None = None
        self._append: Callable[[tuple[Any, ...]], None] | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("ssetap_db", str, "", "SQLite capture file that ssetap records into.")
        loader.add_option("ssetap_raw", bool, False,
                          "Store secrets (Authorization, cookies, session ids) unredacted.")
        loader.add_option("ssetap_checks", str, "{}",
                          "JSON options for ssetap's live stream-health checks.")
        loader.add_option("ssetap_redact_paths", str, "",
                          "JSON paths of MCP messages to redact, one `[METHOD[:NAME]] PATH` a line.")
        loader.add_option("ssetap_otlp", str, "",
                          "JSON options of the live OTLP push (recorder.otlp_push.PushOptions).")

    def configure(self, updated: set[str]) -> None:
        if not ({"ssetap_db", "ssetap_raw", "ssetap_checks", "ssetap_redact_paths",
                 "ssetap_otlp"} & updated):
            return
        db = ctx.options.ssetap_db
        if not db:
            return
        path = Path(db)
        if path.is_dir():
            raise exceptions.OptionsError(f"ssetap_db: {db} is a directory")
        if not path.parent.exists():
            raise exceptions.OptionsError(f"ssetap_db: directory {path.parent} does not exist")
        if self.link is not None and db == self._db:
            return
        self.stop()
        self._db = db
        self.link = WorkerLink(db, ctx.options.ssetap_raw, ctx.options.ssetap_checks,
                               ctx.options.ssetap_redact_paths, ctx.options.ssetap_otlp)
        self._append = self.link.queue.append

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None
            self._append = None

    def done(self) -> None:
        self.stop()

    # Hooks --------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        append = self._append
        if append is None:
            return
        req = flow.request
        append(("q", flow.id, time.time(), req.method, req.url, req.http_version,
                list(req.headers.items(multi=True)), req.raw_content, _client_addr(flow)))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        append = self._append
        if append is None or flow.response is None:
            return
        resp = flow.response
        if resp.stream is False or resp.stream is None:
            resp.stream = self._tap(flow.id, append)
        append(("h", flow.id, time.time(), resp.status_code, resp.reason,
                list(resp.headers.items(multi=True)), True))

    def record_injection(self, flow_id: str, t: float, injection: bytes) -> None:
        """A change `--fault` (recorder.fault_addon) made to this flow, for the capture."""
        append = self._append
        if append is not None:
            append(("f", flow_id, t, injection))

    def response(self, flow: http.HTTPFlow) -> None:
        append = self._append
        if append is None or flow.response is None:
            return
        # Streamed bodies went through the tap; a replayed or offline flow carries its body.
        body = None if flow.live else flow.response.raw_content
        if flow.metadata.get(PROXY_ANSWERED):
            # Another addon answered in `request` (`--fault`): the body never went through
            # the tap.
            body = flow.response.raw_content
        if body:
            append(("c", flow.id, time.time(), body))
        append(("e", flow.id, time.time(), None))

    def error(self, flow: http.HTTPFlow) -> None:
        append = self._append
        if append is None:
            return
        message = flow.error.msg if flow.error else "unknown error"
        append(("x", flow.id, time.time(), message))

    @staticmethod
    def _tap(flow_id: str, append: Callable[[tuple[Any, ...]], None]) -> Callable[[bytes], bytes]:
        clock = time.time

        def tap(data: bytes) -> bytes:
            if data:
                append(("c", flow_id, clock(), data))
            return data

        return tap


addons = [Recorder()]
