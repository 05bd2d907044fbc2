"""The recording process: reads the proxy's raw facts from stdin, writes the capture.

The proxy process only timestamps and ships facts (a stream tap must stay O(1): parsing and
writing in the proxy's own process measured far below bare streaming, because a thread there
competes with the event loop for the GIL). Everything else happens here: SSE parsing,
correlation, redaction, stream-health checks and the SQLite writer.

Input on stdin: frames of facts, as recorder.wire defines them. End of input means "stop":
everything is flushed and the process exits 0 for a complete capture, 3 when some of it could
not be written (the gaps say what). A capture it finds marked as still recording (a killed
recorder, or a worker the proxy restarts after it died) is marked interrupted first, and flows
the proxy resumes are recorded on from there.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import os
import select
import signal
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import recorder.json_paths as json_paths
from recorder import gaps, otlp_push, wire
from recorder.cpu_policy import COMPETE, YIELD, CpuPolicy, demand, set_cpu_mode
from recorder.ingest import Ingest, Observer
from recorder.live import observers_for
from recorder.redact import RAW, REDACTED, Redactor, new_key, redaction_after
from recorder.redact_stage import RedactionStage
from recorder.store import Capture, StoreError, StoreWriter
from recorder.wire import Fact, FrameReader, decode_frame

# Ticks drive live checks and store the tail of quiet streams: at most this much (plus the
# writer's batch) of what the proxy shipped is unrecorded at any moment.
TICK_SECONDS = 0.05
# Exit status of a recording that could not write everything.
EXIT_INCOMPLETE = 3
# Operations queued for the SQLite writer beyond which the worker stops reading its input.
MAX_BACKLOG_OPS = 30_000
# How often the cyclic garbage collector runs (see GcSchedule).
GC_SECONDS = 10.0


class GcSchedule:
    """Cyclic garbage collection by time, not by allocation count.

    The worker allocates a few tuples per SSE event, and CPython's collector, triggered every
    700 allocations, traverses every tracked object still alive each time it reaches the older
    generations: the events queued for the writer, the checks' state. Measured with
    bench/worker_bench.py, that was 12 us of the 32 us the main thread spent per event. What
    the worker keeps is acyclic (refcounting frees it), so automatic collection is off, the
    objects of start-up are frozen out of every traversal, and a full collection runs every
    `interval` seconds: cyclic garbage (from a library, an exception's traceback) is still
    freed, at a bounded delay and a cost of milliseconds a run.
    """

    def __init__(self, interval: float = GC_SECONDS) -> None:
        self.interval = interval
        self._last = time.monotonic()

    def start(self) -> None:
        gc.disable()
        gc.freeze()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            gc.collect()
            self._last = now

    def stop(self) -> None:
        gc.unfreeze()
        gc.enable()


def cpu_policy(max_lag: float) -> CpuPolicy | None:
    """The policy, if this process can both yield and compete again (probed on the calling
    thread: a system that lets a process lower its priority but not restore it must not leave
    the recorder starved for good); None: it stays at its nice value. The process competes
    until `run` has opened the capture."""
    if not (set_cpu_mode(YIELD) and set_cpu_mode(COMPETE)):
        set_cpu_mode(COMPETE)
        return None
    return CpuPolicy.for_max_lag(max_lag)


def waiting(fd: int) -> bool:
    """Whether more input waits on `fd` (a pipe): in a burst the proxy refills it at once."""
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), "little") > 0
    except OSError:
        return False


def defer(seconds: float, stopping: Callable[[], bool]) -> None:
    """Leave the input unread for `seconds` (a `CpuPolicy` deferral), in slices, so that
    recording that stops ends it at once: SIGTERM, or the proxy's link switching this process
    to compete, as it does before it closes our input (stopping is bounded in time)."""
    end = time.monotonic() + seconds
    while not stopping() and os.sched_getscheduler(0) == os.SCHED_IDLE:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, TICK_SECONDS))


def load_key(db_path: Path) -> bytes:
    """The capture's pseudonym key, kept beside it (0600) so later runs pseudonymise alike."""
    key_path = Path(f"{db_path}.key")
    try:
        fd = os.open(key_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        # Never through a symlink, like the capture itself: a planted link must not choose
        # the key (or make us read some other file as one).
        try:
            read_fd = os.open(key_path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise StoreError(f"{key_path} is a symbolic link or unreadable; refusing to use it "
                             "as the capture's key") from None
        with os.fdopen(read_fd, "rb") as f:
            data = f.read(33)
        if len(data) == 32:
            return data
        raise StoreError(f"{key_path} is not an ssetap key file (expected 32 bytes)") from None
    key = new_key()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _stored_redaction(db: Path) -> str | None:
    """What an existing capture says it holds (None for a new file)."""
    try:
        if not db.exists() or not db.stat().st_size:
            return None
        with Capture(db) as capture:
            return capture.meta().get("redaction", REDACTED)
    except (OSError, StoreError):
        return None


def run(db: Path, *, raw: bool, observers_factory: Callable[[StoreWriter], list[Observer]] | None,
        fd: int = 0, redact_paths: tuple[json_paths.PathRule, ...] = (),
        resume: bool = False, cpu: CpuPolicy | None = None) -> int:
    """Record what arrives on `fd` into `db` until end of input (or SIGTERM). `cpu`: when to
    yield the CPU to the traffic (recorder.cpu_policy); None: never switch."""
    previous = _stored_redaction(db)
    writer = StoreWriter(db, recording=True)
    if writer.recovered and not resume:
        print(f"ssetap: note: the last recording into {db} was interrupted; "
              f"{len(writer.recovered)} streams it left open are marked recorder-crash",
              file=sys.stderr, flush=True)
    redactor = Redactor(None if raw else load_key(db))
    # Appending to a capture keeps `meta` truthful: raw rows beside redacted ones make it mixed.
    writer.set_meta("redaction", redaction_after(previous, RAW if raw else REDACTED))
    # One redaction stage in front of the writer, for ingest's rows and the checks' flags alike.
    stage = RedactionStage(writer, redactor, redact_paths)
    otlp = otlp_push.from_environment()  # ssetap record --otlp-endpoint
    # Flags (the live checks') and capture gaps (ingest's) go through `otlp.tee`, after the
    # stage has redacted them, so they become span events too.
    sink = otlp.tee(stage) if otlp is not None else stage
    observers = observers_factory(cast(StoreWriter, sink)) if observers_factory else []
    if otlp is not None:
        observers.append(otlp.observe)
    ingest = Ingest(cast(RedactionStage, sink), redactor, observers)
    ingest.recovered = writer.recovered
    reader = FrameReader()
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C reaches the whole process group; the proxy decides when recording ends (by
    # closing our stdin), so that nothing it already shipped is lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    last_tick = 0.0
    collector = GcSchedule()
    collector.start()
    if cpu is not None:
        # Only now: opening the capture (its schema, a crashed one's recovery) is short and
        # must not wait for idle CPU. At SCHED_IDLE from the start, a worker once had not
        # created the schema by the end of a 300 MB upload that saturated the machine.
        set_cpu_mode(cpu.mode)
    try:
        while not stopping:
            if writer.backlog() > MAX_BACKLOG_OPS:
                # The writer is behind: leave the rest in the pipe and the proxy's queue as raw
                # chunks (~0.3 KB an event) rather than as rows in the writer's queue (~2 KB).
                time.sleep(0.01)
                ready: list[int] = []
                idle = False  # not read, not caught up: the writer is behind
            else:
                ready, _, _ = select.select([fd], [], [], TICK_SECONDS)
                idle = not ready  # nothing arrived for a while: caught up
            newest: Fact | None = None
            first: Fact | None = None
            count, spent = 0, 0.0
            if ready:
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                started = time.thread_time()
                for frame in reader.feed(data):
                    facts = decode_frame(frame)
                    for event in facts:
                        ingest.feed(event)
                    if facts:
                        if first is None:
                            first = facts[0]
                        newest = facts[-1]
                        count += len(facts)
                spent = time.thread_time() - started
            now = time.time()
            switch = None
            if cpu is not None and (idle or newest is not None):
                load = 0.0 if first is None or newest is None else demand(
                    spent, count, wire.fact_time(first), wire.fact_time(newest))
                if load and not waiting(fd):
                    load = 0.0  # nothing more came: a batch, not a rate the worker trails
                switch = cpu.update(0.0 if newest is None else now - wire.fact_time(newest), load)
                if switch is not None and not switch.after:
                    set_cpu_mode(switch.mode)
            writer.submit()  # what this read produced goes to the writer thread now
            if now - last_tick >= TICK_SECONDS:
                ingest.tick(now)
                collector.tick()
                last_tick = now
            if switch is not None and switch.after:
                # The next tick comes after the next read, which measures the backlog first
                # (recorder.live moves ticks back by it): a deferral makes no stream silent.
                defer(switch.after, lambda: stopping)
                set_cpu_mode(switch.mode)
    finally:
        if cpu is not None:
            set_cpu_mode(COMPETE)  # stopping is bounded in time: no waiting for idle CPU now
        ingest.close(time.time())
        if otlp is not None:
            otlp.close(time.time(), writer)
        with contextlib.suppress(StoreError):
            writer.flush(timeout=None)
        complete = writer.complete
        writer.set_meta(gaps.STATE_KEY, gaps.COMPLETE if complete and not writer.gaps_written
                        else gaps.INCOMPLETE)
        try:
            writer.close()
        except StoreError as exc:
            print(f"ssetap: error: {exc}", file=sys.stderr, flush=True)
            complete = False
        for gap in writer.unwritten_gaps:
            print(f"ssetap: error: not in the capture (the disk refused even the gap "
                  f"record): {gap.describe()}", file=sys.stderr, flush=True)
        collector.stop()
    return 0 if complete else EXIT_INCOMPLETE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.worker")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--config", default="{}", help="JSON options for the live checks")
    parser.add_argument("--resume", action="store_true",
                        help="restarted by the proxy after a worker died: resume its flows")
    parser.add_argument("--redact-paths", default="", help="redact path rules, one a line")
    parser.add_argument("--max-lag", type=float, default=wire.DEFAULT_MAX_LAG,
                        help="seconds of unrecorded data past which the proxy sheds")
    args = parser.parse_args(argv)
    # Recording must not slow the traffic it records: when CPU is short (a burst on a small
    # machine), the proxy's event loop goes first and this process catches up afterwards
    # (recorder.cpu_policy); nice 10 is what it competes at when it must catch up.
    with contextlib.suppress(OSError):
        os.nice(10)
    try:
        paths = json_paths.parse_rules(args.redact_paths, "--redact-path")
        return run(args.db, raw=args.raw, observers_factory=observers_for(args.config),
                   redact_paths=paths, resume=args.resume, cpu=cpu_policy(args.max_lag))
    except (StoreError, json_paths.PathError) as exc:
        print(f"ssetap: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
