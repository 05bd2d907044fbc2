"""The mitmproxy addon: taps every HTTP exchange and ships it to the recording process.

Use it inside `ssetap record`, or on its own:
    mitmdump -s recorder/addon.py --set ssetap_db=capture.db

Design notes:
- Every response is streamed (`flow.response.stream` set in `responseheaders`), so SSE bytes
  reach the client as soon as the server writes them, byte for byte. The tap appends
  (code, flow, time, bytes) to a deque and returns the bytes unchanged: O(1) on the event loop,
  and nothing on it ever waits for the recorder.
- A sender thread ships the deque in frames (recorder.wire) to `recorder.worker`, a separate
  process that does all parsing and writing, through a non-blocking pipe: the sender never
  blocks either, so it always sees how far behind the recorder is.
- Bounded backlog: past `ssetap_max_backlog` bytes or `ssetap_max_lag_ms` of unshipped facts,
  the sender sheds stream chunks instead of queueing them (structural facts, small, still go),
  and ships in their place gap facts that say exactly what was shed; one console line when
  shedding starts, one when it ends.
- A dead worker is noticed at once, restarted (a few times at most) into the same capture,
  and told which flows are still open; what it had not stored becomes a `worker-died` gap.
- Stopping takes at most `ssetap_stop_timeout_ms`: what cannot be shipped by then becomes a
  `stopped` gap, and a worker that does not finish in time is killed (its capture is then
  marked interrupted, like after a crash). It happens once the event loop is gone, not in
  the `done` hook: connections go on forwarding until asyncio tears them down, and those last
  bytes are recorded too; whatever is queued after the sender's last look goes out as
  `stopped` gaps, so recorded + shed = sent holds for streams still open at the stop.
- Forwarded traffic is never modified; redaction happens on the stored copy in the worker.
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Loaded by `mitmdump -s path/to/recorder/addon.py`: make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import ctx, exceptions, http

from recorder import wire
from recorder.ingest import MAX_STORED_BODY
from recorder.wire import LinkLimits, LinkOutcome
from recorder.worker_link import WorkerLink

log = logging.getLogger("ssetap")

# flow.metadata key set by an addon that answers a request itself (recorder.fault_addon).
PROXY_ANSWERED = "ssetap_proxy_answered"


def _shutting_down() -> bool:
    """Whether mitmproxy is exiting (not just unloading this addon)."""
    try:
        return bool(ctx.master.should_exit.is_set())
    except AttributeError:
        return False


def _client_addr(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return f"{peer[0]}:{peer[1]}" if peer else ""


class Recorder:
    """Records every HTTP exchange, with streamed bodies, into an ssetap capture."""

    def __init__(self) -> None:
        self.link: WorkerLink | None = None
        self.outcome: LinkOutcome | None = None
        self._db: str | None = None
        self._append: Callable[[tuple[Any, ...]], None] | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("ssetap_db", str, "", "SQLite capture file that ssetap records into.")
        loader.add_option("ssetap_raw", bool, False,
                          "Store secrets (Authorization, cookies, session ids) unredacted.")
        loader.add_option("ssetap_checks", str, "{}",
                          "JSON options for ssetap's live stream-health checks.")
        loader.add_option("ssetap_otlp", str, "",
                          "JSON options of the live OTLP push (recorder.otlp_push.PushOptions).")
        loader.add_option("ssetap_redact_paths", str, "",
                          "JSON paths of MCP messages to redact, one `[METHOD[:NAME]] PATH` a line.")
        loader.add_option("ssetap_max_backlog", int, wire.DEFAULT_MAX_BACKLOG,
                          "Bytes of unrecorded data the proxy may hold before it sheds.")
        loader.add_option("ssetap_max_lag_ms", int, int(wire.DEFAULT_MAX_LAG * 1000),
                          "Milliseconds the recording may fall behind the wire before it sheds.")
        loader.add_option("ssetap_stop_timeout_ms", int, int(wire.DEFAULT_STOP_TIMEOUT * 1000),
                          "Milliseconds that stopping may take; what is not recorded by then "
                          "becomes a gap.")

    def configure(self, updated: set[str]) -> None:
        if not ({"ssetap_db", "ssetap_raw", "ssetap_checks", "ssetap_redact_paths",
                 "ssetap_max_backlog", "ssetap_otlp",
                 "ssetap_max_lag_ms", "ssetap_stop_timeout_ms"} & updated):
            return
        for name in ("ssetap_max_backlog", "ssetap_max_lag_ms", "ssetap_stop_timeout_ms"):
            if getattr(ctx.options, name) <= 0:
                raise exceptions.OptionsError(f"{name} must be positive")
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
        limits = LinkLimits(ctx.options.ssetap_max_backlog, ctx.options.ssetap_max_lag_ms / 1000,
                            ctx.options.ssetap_stop_timeout_ms / 1000)
        self.link = WorkerLink(db, ctx.options.ssetap_raw, ctx.options.ssetap_checks, limits,
                               ctx.options.ssetap_redact_paths, ctx.options.ssetap_otlp)
        self._append = self.link.queue.append

    def stop(self) -> None:
        """Finish the recording (bounded by the stop timeout); idempotent."""
        atexit.unregister(self.stop)
        if self.link is not None:
            self._append = None
            self.outcome = self.link.close()
            self.link = None

    def done(self) -> None:
        if self.link is not None and _shutting_down():
            # The proxy is exiting, and its connections go on forwarding until asyncio tears
            # them down, after this hook: the link stays open until then, so those last bytes
            # are recorded too. `ssetap record` stops it once the event loop is gone (see
            # recorder.proxy.run_proxy); under plain `mitmdump -s`, the exit does.
            atexit.register(self.stop)
            return
        self.stop()

    # Hooks --------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._append is None or flow.request.stream:
            return
        length = flow.request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_STORED_BODY:
            # A body larger than what is stored is streamed through, not buffered whole in
            # the proxy: the tap keeps the stored part and counts the rest.
            kept: list[bytes] = []
            counts = [0, 0]  # bytes kept, bytes seen

            def tap(data: bytes) -> bytes:
                if data:
                    if counts[0] < MAX_STORED_BODY:
                        part = data[:MAX_STORED_BODY - counts[0]]
                        kept.append(part)
                        counts[0] += len(part)
                    counts[1] += len(data)
                return data

            flow.request.stream = tap
            flow.metadata["ssetap_streamed_body"] = (kept, counts)

    def request(self, flow: http.HTTPFlow) -> None:
        append = self._append
        if append is None:
            return
        req = flow.request
        streamed = flow.metadata.pop("ssetap_streamed_body", None)
        if streamed is not None:
            body: bytes | None = b"".join(streamed[0])
            size = streamed[1][1]
        else:
            body = req.raw_content
            size = len(body) if body is not None else 0
        if body is not None and len(body) > MAX_STORED_BODY:
            # Forwarded in full; only the stored part crosses to the worker.
            body = body[:MAX_STORED_BODY]
        append((wire.REQUEST, flow.id, time.time(), req.method, req.url, req.http_version,
                list(req.headers.items(multi=True)), body, _client_addr(flow), size))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        append = self._append
        if append is None or flow.response is None:
            return
        resp = flow.response
        if resp.stream is False or resp.stream is None:
            resp.stream = self._tap(flow.id, append)
        append((wire.RESPONSE_HEADERS, flow.id, time.time(), resp.status_code, resp.reason,
                list(resp.headers.items(multi=True)), True))

    def record_injection(self, flow_id: str, t: float, injection: bytes) -> None:
        """A change `--fault` (recorder.fault_addon) made to this flow, for the capture."""
        append = self._append
        if append is not None:
            append((wire.INJECTION, flow_id, t, injection))

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
            append((wire.CHUNK, flow.id, time.time(), body[:MAX_STORED_BODY]))
        append((wire.END, flow.id, time.time(), None))

    def error(self, flow: http.HTTPFlow) -> None:
        append = self._append
        if append is None:
            return
        message = flow.error.msg if flow.error else "unknown error"
        append((wire.ERROR, flow.id, time.time(), message))

    @staticmethod
    def _tap(flow_id: str, append: Callable[[tuple[Any, ...]], None]) -> Callable[[bytes], bytes]:
        clock = time.time
        code = wire.CHUNK

        def tap(data: bytes) -> bytes:
            if data:
                append((code, flow_id, clock(), data))
            return data

        return tap


addons = [Recorder()]
