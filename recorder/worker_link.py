"""The proxy's side of the link to the recording process: `WorkerLink` ships the addon's
facts to `recorder.worker` over its stdin, within bounded memory and bounded time.

Design notes (the addon's, recorder/addon.py, say how facts are made):
- A sender thread ships the queue in frames (recorder.wire) through a non-blocking pipe: the
  sender never blocks, so it always sees how far behind the recorder is.
- Bounded backlog: past `max_backlog` bytes or `max_lag` seconds of unshipped facts, the
  sender sheds stream chunks instead of queueing them (structural facts, small, still go),
  and ships in their place gap facts that say exactly what was shed; one console line when
  shedding starts, one when it ends.
- A dead worker is noticed at once, restarted (a few times at most) into the same capture,
  and told which flows are still open; what it had not stored becomes a `worker-died` gap.
- Stopping takes at most `stop_timeout`: what cannot be shipped by then becomes a `stopped`
  gap, and a worker that does not finish in time is killed.
No mitmproxy here: the addon owns every mitmproxy import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from recorder import wire
from recorder.cpu_policy import COMPETE, set_cpu_mode
from recorder.wire import LinkLimits, LinkOutcome

log = logging.getLogger("ssetap")

SEND_INTERVAL = 0.01
MAX_FRAME_EVENTS = 2000
MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_RESTARTS = 3
# The worker's exit status for a capture it cannot open (recorder.worker): not restarted.
EXIT_CANNOT_START = 2
# Shedding lasts at least this long once started, so an overload is a few long gaps and two
# console lines, not a flicker of tiny gaps. An episode that starts soon after the last one
# ended (a sustained overload) lasts twice as long as that one, up to the maximum.
MIN_SHED_SECONDS = 1.0
MAX_SHED_SECONDS = 8.0
RECURRENCE_SECONDS = 5.0


class _Shed:
    """What is being shed of one flow: a gap fact in the making."""

    __slots__ = ("bytes", "chunks", "events", "t_end", "t_start", "tail")

    def __init__(self, t: float, tail: bytes) -> None:
        self.t_start = self.t_end = t
        self.bytes = self.chunks = self.events = 0
        self.tail = tail

    def add(self, t: float, data: bytes) -> None:
        self.t_end = t
        self.bytes += len(data)
        self.chunks += 1
        self.events += wire.sse_terminators(data, self.tail)
        self.tail = (self.tail + data)[-3:] if len(data) < 3 else data[-3:]


class WorkerLink:
    """Ships facts to a `recorder.worker` process over its stdin, within bounded memory."""

    def __init__(self, db: str, raw: bool, config: str, limits: LinkLimits | None = None,
                 redact_paths: str = "", otlp: str = "") -> None:
        self.limits = limits or LinkLimits()
        self._cmd_args = (db, raw, config, redact_paths)
        self._otlp = otlp
        self.queue: deque[wire.Fact] = deque()
        self._held: deque[wire.Fact] = deque()
        self._held_bytes = 0
        self._out = memoryview(b"")
        self._out_t: float | None = None
        # Open flows: flow id -> [request fact without body, response-headers fact or None,
        # bytes seen on the wire, last three bytes seen]. Enough to resume them in a new worker.
        self._flows: dict[str, list[Any]] = {}
        self._shed: dict[str, _Shed] = {}
        self._shedding_since: float | None = None
        self._shed_for = MIN_SHED_SECONDS
        self._shed_ended = -RECURRENCE_SECONDS
        self._shed_reason = wire.OVERLOAD
        self.shed_chunks = self.shed_bytes = self.shed_gaps = 0
        self._episode = [0, 0, 0]  # chunks, bytes, events of the current shedding episode
        self.restarts = 0
        self._dead = False  # no worker any more (restarts used up): facts are dropped
        self._lost_facts = 0
        self._stop = threading.Event()
        self._drain_deadline = 0.0
        self._hard_deadline = 0.0
        self.proc = self._spawn(resume=False)
        self._thread = threading.Thread(target=self._run, name="ssetap-sender", daemon=True)
        self._thread.start()

    def _spawn(self, *, resume: bool) -> subprocess.Popen[bytes]:
        db, raw, config, redact_paths = self._cmd_args
        env = dict(os.environ)
        env.pop("SSETAP_OTLP", None)
        if self._otlp:
            # recorder.otlp_push.ENV_VAR: in the environment, not argv (a backend's auth header)
            env["SSETAP_OTLP"] = self._otlp
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        # -P: do not put the current directory first on sys.path, or a `recorder` package in
        # the user's working directory would be run as the worker instead of this one.
        cmd = [sys.executable, "-P", "-m", "recorder.worker", "--db", db, "--config", config,
               "--max-lag", repr(self.limits.max_lag)]
        if raw:
            cmd.append("--raw")
        if redact_paths:
            cmd += ["--redact-paths", redact_paths]
        if resume:
            cmd.append("--resume")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env, bufsize=0)
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)
        return proc

    # Sender thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            cycle = time.monotonic()
            self._take()
            now = time.monotonic()
            stopping = self._stop.is_set()
            if stopping and now >= self._drain_deadline and self._shed_reason != wire.STOPPED:
                self._start_shedding(wire.STOPPED, now)
            if not self._dead and self.proc.poll() is not None:
                self._worker_died()
            if not stopping:
                self._check_limits(now)
            wrote = self._write(now + SEND_INTERVAL)
            if self._shedding_since is not None and not stopping and not self._held \
                    and not self._out and now - self._shedding_since >= self._shed_for:
                self._stop_shedding(now)
            if stopping:
                if self._shedding_since is not None and not self.queue:
                    self._flush_shed()
                if (not self.queue and not self._held and not self._out) or self._dead \
                        or now >= self._hard_deadline:
                    return
                if not wrote and not self.queue:
                    time.sleep(0.002)
                continue
            # One frame per interval, not one per chunk: what arrives meanwhile waits for the
            # next cycle. Each cycle takes the GIL from the event loop (which then waits for
            # it after its next system call) and wakes the worker, so under a busy stream
            # fewer, larger batches cost the proxy and the worker less per event.
            rest = cycle + SEND_INTERVAL - time.monotonic()
            if rest > 0 and len(self.queue) < MAX_FRAME_EVENTS:
                self._stop.wait(rest)

    def _take(self) -> None:
        """Move what the hooks and taps queued to the held backlog (or shed it)."""
        queue, held, flows = self.queue, self._held, self._flows
        popleft = queue.popleft
        if self._dead:
            for _ in range(len(queue)):
                popleft()
                self._lost_facts += 1
            return
        shedding = self._shedding_since is not None
        chunk_code = wire.CHUNK
        held_append = held.append
        held_bytes = 0
        # The flow of the previous chunk and its entry: a batch is mostly runs of one flow.
        last_id: str | None = None
        info: list[Any] | None = None
        for _ in range(len(queue)):
            fact = popleft()
            if fact[0] == chunk_code:
                data = fact[3]
                if fact[1] is not last_id:
                    last_id = fact[1]
                    info = flows.get(last_id)
                tail = b""
                if info is not None:
                    tail = info[3]
                    info[2] += len(data)
                    # The stream's last bytes so far: the chunk itself (sliced only when
                    # needed), or, after a chunk shorter than three bytes, what it completes.
                    info[3] = data if len(data) >= 3 else (tail[-3:] + data)[-3:]
                if shedding:
                    self._shed_chunk(fact, tail)
                    continue
                held_append(fact)
                held_bytes += len(data) + 200
                continue
            last_id = info = None
            flow_id = fact[1]
            code = fact[0]
            if code == wire.REQUEST:
                flows[flow_id] = [fact[:7] + (None, fact[8], fact[9]), None, 0, b""]
            elif code == wire.RESPONSE_HEADERS:
                entry = flows.get(flow_id)
                if entry is not None:
                    entry[1] = fact
            elif code in (wire.END, wire.ERROR):
                flows.pop(flow_id, None)
                if shedding and flow_id in self._shed:
                    self._emit_gap(flow_id, self._shed.pop(flow_id))
            held_append(fact)
            held_bytes += wire.fact_size(fact)
        self._held_bytes += held_bytes

    def _shed_chunk(self, fact: wire.Fact, tail: bytes) -> None:
        entry = self._shed.get(fact[1])
        if entry is None:
            entry = self._shed[fact[1]] = _Shed(fact[2], tail[-3:])
        before = entry.events
        entry.add(fact[2], fact[3])
        self._episode[0] += 1
        self._episode[1] += len(fact[3])
        self._episode[2] += entry.events - before

    def _emit_gap(self, flow_id: str, entry: _Shed) -> None:
        self._held.append((wire.GAP, flow_id, entry.t_start, entry.t_end, entry.bytes,
                           entry.chunks, entry.events, self._shed_reason, None, entry.tail))
        self._held_bytes += 400
        self.shed_chunks += entry.chunks
        self.shed_bytes += entry.bytes
        self.shed_gaps += 1

    def _flush_shed(self) -> None:
        for flow_id, entry in self._shed.items():
            self._emit_gap(flow_id, entry)
        self._shed.clear()

    def _lag(self, now_wall: float) -> float:
        oldest = self._out_t if self._out_t is not None else (
            wire.fact_time(self._held[0]) if self._held else None)
        return 0.0 if oldest is None else now_wall - oldest

    def _check_limits(self, now: float) -> None:
        if self._shedding_since is not None:
            return
        held = self._held_bytes + len(self._out)
        lag = self._lag(time.time())
        if held > self.limits.max_backlog or lag > self.limits.max_lag:
            log.warning(f"recording is behind the traffic ({held / 1e6:.0f} MB, {lag:.1f} s "
                        "unrecorded): shedding stream data until it catches up; traffic is not "
                        "affected, and what is shed is recorded as gaps")
            self._start_shedding(wire.OVERLOAD, now)

    def _start_shedding(self, reason: str, now: float) -> None:
        if reason == wire.OVERLOAD:
            recurring = now - self._shed_ended < RECURRENCE_SECONDS
            self._shed_for = min(self._shed_for * 2, MAX_SHED_SECONDS) if recurring \
                else MIN_SHED_SECONDS
        if self._shedding_since is not None:
            # Already shedding (overload), now stopping: the rest goes out as `stopped` gaps.
            self._flush_shed()
        self._shedding_since = now
        self._shed_reason = reason
        self._episode = [0, 0, 0]
        # The backlog itself is shed: its chunks become gaps, its structural facts stay. The
        # first held chunk of each flow is kept: its last bytes are the gap's context (an SSE
        # event's blank line may straddle the cut).
        kept: deque[wire.Fact] = deque()
        self._held_bytes = 0
        old, self._held = self._held, kept
        first: dict[str, bytes] = {}
        for fact in old:
            if fact[0] == wire.CHUNK:
                entry = self._shed.get(fact[1])
                if entry is None and fact[1] not in first:
                    first[fact[1]] = fact[3][-3:]
                    kept.append(fact)
                    self._held_bytes += len(fact[3]) + 200
                    continue
                self._shed_chunk(fact, entry.tail if entry else first.get(fact[1], b""))
                continue
            if fact[0] in (wire.END, wire.ERROR) and fact[1] in self._shed:
                self._emit_gap(fact[1], self._shed.pop(fact[1]))
            kept.append(fact)
            self._held_bytes += wire.fact_size(fact)

    def _stop_shedding(self, now: float) -> None:
        self._flush_shed()
        chunks, size, events = self._episode
        log.warning(f"recording caught up after {now - (self._shedding_since or now):.1f} s: "
                    f"{events:,} SSE events ({chunks:,} chunks, {size:,} bytes) were shed and "
                    "are recorded as gaps")
        self._shedding_since = None
        self._shed_ended = now

    def _write(self, until: float) -> bool:
        """Write frames until `until` or the pipe is full; returns whether anything went."""
        if self._dead:
            return False
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        wrote = False
        while True:
            if not self._out:
                if not self._held:
                    return wrote
                self._frame()
            try:
                n = os.write(fd, self._out)
            except BlockingIOError:
                n = 0
            except OSError:  # BrokenPipeError: the worker is gone
                self._worker_died()
                return wrote
            if n:
                wrote = True
                self._out = self._out[n:]
                if not self._out:
                    self._out_t = None
                continue
            remaining = until - time.monotonic()
            if remaining <= 0:
                return wrote
            select.select([], [fd], [], remaining)

    def _frame(self) -> None:
        held = self._held
        if len(held) <= MAX_FRAME_EVENTS and self._held_bytes <= MAX_FRAME_BYTES:
            # The usual case: everything held fits one frame (taken whole, in C).
            batch = list(held)
            held.clear()
            self._held_bytes = 0
        else:
            batch = []
            size = 0
            popleft, append, chunk = held.popleft, batch.append, wire.CHUNK
            fact_size = wire.fact_size
            while held and len(batch) < MAX_FRAME_EVENTS and size < MAX_FRAME_BYTES:
                fact = popleft()
                append(fact)
                # The same sizes `_take` counted (inlined for chunks: this runs per chunk).
                size += len(fact[3]) + 200 if fact[0] == chunk else fact_size(fact)
            self._held_bytes = max(0, self._held_bytes - size) if held else 0
        self._out_t = wire.fact_time(batch[0])
        self._out = memoryview(wire.encode_frame(batch))

    def _worker_died(self) -> None:
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            code = self.proc.wait()
        # What was waiting for the dead worker is dropped: the new worker records it as a
        # `worker-died` gap per open flow (from what the dead one stored to the wire offset).
        self._held.clear()
        self._held_bytes = 0
        self._out = memoryview(b"")
        self._out_t = None
        self._shed.clear()
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        if code == EXIT_CANNOT_START:
            # It refused the capture (locked by another recorder, not a capture, unreadable
            # key): a restart would refuse it again.
            self._dead = True
            log.error("the recording process could not start (see above), so recording stops; "
                      "traffic still flows")
            return
        if self.restarts >= MAX_RESTARTS or self._stop.is_set():
            self._dead = True
            log.error(f"the recording process died (exit {code}); "
                      + ("not restarted while stopping" if self._stop.is_set() else
                         f"restarted {self.restarts} times already, so recording stops")
                      + "; traffic still flows")
            return
        self.restarts += 1
        log.error(f"the recording process died (exit {code}); restarting it "
                  f"({self.restarts} of {MAX_RESTARTS}); what it had not stored is recorded "
                  "as a gap")
        self.proc = self._spawn(resume=True)
        now = time.time()
        for flow_id, (request, headers, offset, _tail) in self._flows.items():
            self._held.append((wire.RESUME, flow_id, now, request, headers, offset))
            self._held_bytes += 1000

    def _ship_late(self, deadline: float) -> None:
        """After the sender ended: what the hooks and taps queued after its last look (the
        traffic went on while the link stopped accepting facts) goes out as `stopped` gaps
        and structural facts, so that recorded + shed = sent still holds for every stream."""
        if self._dead or not self.queue:
            return
        if self._shedding_since is None or self._shed_reason != wire.STOPPED:
            self._start_shedding(wire.STOPPED, time.monotonic())
        self._take()
        self._flush_shed()
        while (self._held or self._out) and not self._dead and time.monotonic() < deadline:
            self._write(deadline)

    # Owner side --------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> LinkOutcome:
        """Stop within `timeout` (default: the limits' stop timeout), whatever the worker does."""
        timeout = self.limits.stop_timeout if timeout is None else timeout
        start = time.monotonic()
        self._hard_deadline = start + timeout * 0.7
        # Most of the time goes to shipping; the rest is the worker's to finish writing.
        self._drain_deadline = start + timeout * 0.5
        # The worker may be yielding the CPU (recorder.cpu_policy); its draining must not wait
        # for idle CPU on a busy machine.
        if self.proc.poll() is None:  # not reaped: its pid is still the worker's
            set_cpu_mode(COMPETE, self.proc.pid)
        self._stop.set()
        self._thread.join(max(0.0, self._hard_deadline - time.monotonic()) + 0.5)
        if not self._thread.is_alive():
            self._ship_late(start + timeout * 0.8)
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        exit_code: int | None
        try:
            exit_code = self.proc.wait(max(0.1, start + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error(f"the recording process did not finish within {timeout:g} s; stopped it "
                      "(the capture is marked interrupted)")
            self.proc.kill()
            self.proc.wait()
            exit_code = None
        if self._lost_facts:
            log.error(f"{self._lost_facts:,} facts arrived after the recording process was "
                      "given up on and are not in the capture")
        complete = (exit_code == 0 and not self.shed_gaps and not self.restarts
                    and not self._dead and not self._out and not self._held)
        return LinkOutcome(complete, self.shed_chunks, self.shed_bytes, self.shed_gaps,
                           self.restarts, exit_code)
