"""The recording process: reads the proxy's raw facts from stdin, writes the capture.

The proxy process only timestamps and ships facts (a stream tap must stay O(1): parsing and
writing in the proxy's own process measured far below bare streaming, because a thread there
competes with the event loop for the GIL). Everything else happens here: SSE parsing,
correlation, redaction, stream-health checks and the SQLite writer.

Wire format on stdin: frames of a 4-byte big-endian length and a `marshal`-encoded list of
`RawEvent` tuples. End of input means "stop": everything is flushed and the process exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import marshal
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import recorder.json_paths as json_paths
from recorder import otlp_push
from recorder.ingest import Ingest, Observation, Observer
from recorder.live import observers_for
from recorder.redact import RAW, REDACTED, Redactor, new_key, redaction_after
from recorder.redact_stage import RedactionStage
from recorder.store import Capture, StoreError, StoreWriter

TICK_SECONDS = 0.2
# Operations queued for the SQLite writer beyond which the worker stops reading its input.
MAX_BACKLOG_OPS = 30_000


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


class FrameReader:
    """Splits a byte stream into length-prefixed frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            size = int.from_bytes(self._buf[:4], "big")
            if len(self._buf) < 4 + size:
                break
            out.append(bytes(self._buf[4:4 + size]))
            del self._buf[:4 + size]
        return out


def run(db: Path, *, raw: bool, observers_factory: Callable[[StoreWriter], list[Observer]] | None,
        fd: int = 0, redact_paths: tuple[json_paths.PathRule, ...] = ()) -> int:
    previous = _stored_redaction(db)
    writer = StoreWriter(db)
    redactor = Redactor(None if raw else load_key(db))
    # Appending to a capture keeps `meta` truthful: raw rows beside redacted ones make it mixed.
    writer.set_meta("redaction", redaction_after(previous, RAW if raw else REDACTED))
    # One redaction stage in front of the writer, for ingest's rows and the checks' flags alike.
    stage = RedactionStage(writer, redactor, redact_paths)
    otlp = otlp_push.from_environment()  # ssetap record --otlp-endpoint
    # The live checks write their flags through `otlp.tee` (after the stage has redacted them),
    # so flags become span events too.
    sink = otlp.tee(stage) if otlp is not None else stage
    observers = observers_factory(cast(StoreWriter, sink)) if observers_factory else []
    if otlp is not None:
        observers.append(otlp.observe)
    ingest = Ingest(stage, redactor, observers)
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
    try:
        while not stopping:
            if writer.backlog() > MAX_BACKLOG_OPS:
                # The writer is behind: leave the rest in the pipe and the proxy's queue as raw
                # chunks (~0.3 KB an event) rather than as rows in the writer's queue (~2 KB).
                time.sleep(0.01)
                ready: list[int] = []
            else:
                ready, _, _ = select.select([fd], [], [], TICK_SECONDS)
            if ready:
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                for frame in reader.feed(data):
                    for event in marshal.loads(frame):
                        ingest.feed(event)
            now = time.time()
            if now - last_tick >= TICK_SECONDS:
                ingest.tick(now)
                last_tick = now
    finally:
        ingest.close(time.time())
        if otlp is not None:
            otlp.close(time.time(), writer)
        writer.close()
    return 0


def print_flag(observation: Observation) -> None:
    """Live console line for a flag raised while recording."""
    if observation.kind == "flag":
        row = observation.row
        print(f"ssetap: [{row['severity']}] {row['kind']}: {row['message']}", file=sys.stderr,
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder.worker")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--config", default="{}", help="JSON options for the live checks")
    parser.add_argument("--redact-paths", default="", help="redact path rules, one a line")
    args = parser.parse_args(argv)
    # Recording must not slow the traffic it records: when CPU is short (a burst on a small
    # machine), the proxy's event loop goes first and this process catches up afterwards.
    with contextlib.suppress(OSError):
        os.nice(10)
    try:
        paths = json_paths.parse_rules(args.redact_paths, "--redact-path")
        return run(args.db, raw=args.raw, observers_factory=observers_for(args.config),
                   redact_paths=paths)
    except (StoreError, json_paths.PathError) as exc:
        print(f"ssetap: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
