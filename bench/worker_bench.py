"""The recording process's CPU per event, in-process: facts in, capture out, no proxy.

Usage: `python bench/worker_bench.py [--events 100000] [--no-checks] [--profile out.html]`

Feeds `--events` SSE events (the `bench/sse_server.py` shape, one event per chunk) through
the worker's own pipeline (wire frames decoded, `Ingest`, the live checks, `StoreWriter`
into a fresh capture in a temporary directory) and prints CPU microseconds per event of the
main thread (decode, ingest, health) and of the writer thread, measured with
`time.thread_time` / `/proc/self/task`; and, as the baseline measured in the same run, the
CPU SQLite alone takes to store the same rows (executemany in batches, as the writer
commits). The writer thread also frees the events once stored (it holds their last
reference): about 2 us/event on py3.11 and 3.13, most of what it spends above the baseline.
Run it before and after a change on the same machine. `--profile` writes a pyinstrument
report of the main thread (needs `pip install pyinstrument`).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recorder import wire
from recorder.ingest import Ingest
from recorder.live import observers_for
from recorder.redact import Redactor
from recorder.store import StoreWriter
from recorder.worker import MAX_BACKLOG_OPS, GcSchedule

EVENT = (b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
         b'"params":{"level":"info","logger":"bench","data":{"seq":%d,"t":%.6f}}}\r\n\r\n')


def frames(events: int, frame_events: int = 2000) -> list[bytes]:
    facts: list[wire.Fact] = [
        (wire.REQUEST, "f1", 1.0, "GET", "http://127.0.0.1:1/sse", "HTTP/1.1",
         [("accept", "text/event-stream")], None, "127.0.0.1:5", 0),
        (wire.RESPONSE_HEADERS, "f1", 1.0, 200, "OK", [("content-type", "text/event-stream")],
         True)]
    t = 1.0
    for seq in range(events):
        t += 0.00003
        facts.append((wire.CHUNK, "f1", t, EVENT % (seq, t)))
    facts.append((wire.END, "f1", t, None))
    return [wire.encode_frame(facts[i:i + frame_events])
            for i in range(0, len(facts), frame_events)]


def thread_cpu(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--profile", metavar="HTML")
    parser.add_argument("--no-checks", action="store_true",
                        help="without the live checks: the cost of ingest, redaction and storing")
    args = parser.parse_args()
    data = frames(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        writer = StoreWriter(Path(tmp) / "bench.db", recording=True)
        observers = [] if args.no_checks else observers_for('{"quiet": true}')(writer)
        ingest = Ingest(writer, Redactor(b"k" * 32), observers)
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler()
            profiler.start()
        collector = GcSchedule()  # as the worker runs
        collector.start()
        main_start = time.thread_time()
        wall = time.perf_counter()
        reader = wire.FrameReader()
        last_tick = 0.0
        for frame_bytes in data:
            while writer.backlog() > MAX_BACKLOG_OPS:  # the worker stops reading then, too
                time.sleep(0.005)
            for frame in reader.feed(frame_bytes):
                for fact in wire.decode_frame(frame):
                    ingest.feed(fact)
            now = time.time()
            writer.submit()
            if now - last_tick > 0.05:
                ingest.tick(now)
                collector.tick()
                last_tick = now
        ingest.close(time.time())
        main_cpu = time.thread_time() - main_start
        collector.stop()
        if profiler is not None:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_html())
        writer.flush(timeout=None)
        writer_cpu = thread_cpu(writer._thread.native_id or threading.get_native_id())
        wall = time.perf_counter() - wall
        writer.close()
        floor = sqlite_floor(Path(tmp) / "bench.db", Path(tmp) / "floor.db")
    n = args.events
    print(f"{n} events in {wall:.2f} s: main thread {main_cpu / n * 1e6:.1f} us/event, "
          f"writer thread {writer_cpu / n * 1e6:.1f} us/event, "
          f"total {(main_cpu + writer_cpu) / n * 1e6:.1f} us/event")
    print(f"baseline, SQLite alone storing the same rows: {floor / n * 1e6:.1f} us/event "
          f"(writer thread / baseline: {writer_cpu / floor:.2f}x)")


def sqlite_floor(source: Path, target: Path, batch_events: int = 700) -> float:
    """CPU seconds SQLite alone takes to store the rows the writer stored: the same chunks,
    SSE events and messages, inserted with executemany into a fresh capture (same schema,
    WAL, page cache) in transactions of `batch_events` events (about the writer's 50 ms
    batches at full speed). What the writer thread spends beyond it is Python's share."""
    StoreWriter(target).close()  # the schema, as the recorder creates it
    src = sqlite3.connect(source)
    tables = {t: src.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
              for t in ("chunks", "sse_events", "messages")}
    columns = {t: [r[1] for r in src.execute(f"PRAGMA table_info({t})")] for t in tables}
    src.close()
    db = sqlite3.connect(target, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-16384")
    statements = {t: f"INSERT INTO {t} ({', '.join(repr(c) for c in columns[t])}) "
                     f"VALUES ({', '.join('?' for _ in columns[t])})" for t in tables}
    start = time.thread_time()
    longest = max(len(rows) for rows in tables.values())
    for first in range(0, longest, batch_events):
        db.execute("BEGIN")
        for table, rows in tables.items():
            db.executemany(statements[table], rows[first:first + batch_events])
        db.execute("COMMIT")
    cpu = time.thread_time() - start
    db.close()
    return cpu


if __name__ == "__main__":
    main()
