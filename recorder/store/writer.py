"""The single writer of a capture (a thread fed by a queue), and the short-lived writers of
offline tools (check storing its flags, bulk loads, marking an interrupted recording).

One writer per capture: `StoreWriter` owns the only read-write connection, in its own thread,
and commits in batches so a burst of events costs one transaction, not many. Row ids are
assigned by the caller (`StoreWriter.next_id`), so producers can link rows (messages to
streams, calls to messages) without waiting for the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import operator
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from recorder import gaps
from recorder.events import ChunkStored, Event, MessageSeen, SseSeen
from recorder.store.event_rows import DATA_EVENTS, INSERTS, events_of, operations
from recorder.store.readers import meta, open_readonly
from recorder.store.recovery import recover_interrupted
from recorder.store.schema import TABLES, StoreError, create_private, migrate, set_meta_row

# --- Writer ---------------------------------------------------------------------------------

# Rows of traffic data: under a write failure these are dropped (and counted as a gap), the
# rest of a failed batch is retried.
_DATA_TABLES = frozenset({"chunks", "sse_events", "messages"})
# Operations handed to the writer thread at once, and applied in one transaction at most.
_SUBMIT_EVERY = 512
_BATCH_OPS = 20_000


def _print_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def recover_if_interrupted(path: str | os.PathLike[str]) -> int:
    """Open a capture for writing just long enough to mark an interrupted recording.

    Returns how many streams were marked; 0 when the file is being recorded right now (its
    lock is held), is read-only to us, or was closed cleanly (then it is not opened for
    writing at all, so an old capture is not migrated by a look)."""
    try:
        reader = open_readonly(path)
        try:
            state = meta(reader).get(gaps.STATE_KEY)
        finally:
            reader.close()
    except StoreError:
        return 0
    if state != gaps.RECORDING:
        return 0
    try:
        writer = StoreWriter(path)
    except (StoreError, OSError):
        return 0
    try:
        return len(writer.recovered)
    finally:
        with contextlib.suppress(StoreError):
            writer.close()



class StoreWriter:
    """The single writer of a capture: a thread that applies queued operations in batches.

    Operations are `write(event)` (the recorder's typed events: recorder.store.event_rows says
    which rows each one becomes), `insert(table, row)`, `update(table, id, changes)` and
    `record_gap(gap)`; `flush()` waits until everything queued so far is applied. Ids come
    from `next_id(table)`.

    A failed batch (disk full, I/O error, the file locked by someone else) is rolled back and
    its cause reported once through `report`; the batch's structural rows (sessions, exchanges,
    streams, calls, flags, gaps, updates: small, and what keeps the capture's shape) are kept
    and retried with backoff, its data rows (chunks, SSE events, messages) are dropped and
    counted per stream. When a write succeeds again, what was dropped becomes `write-failed`
    gaps. The file stays consistent throughout: SQLite rolls a failed transaction back whole.
    """

    def __init__(self, path: str | os.PathLike[str], *, batch_seconds: float = 0.05,
                 recording: bool = False,
                 report: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        create_private(self.path)
        try:
            # Not through a symlink: a planted link would have us create or truncate its target.
            self._lock_fd = os.open(f"{self.path}.lock", os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW,
                                    0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {self.path}.lock ({exc.strerror}); a symbolic link "
                             "there is refused") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreError(f"{self.path} is being written by another ssetap recorder") from None
        try:
            # A short busy timeout: another process holding the file must not stall the
            # writer for long; the batch is retried instead.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=1.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # 16 MB of page cache (the default is 2 MB): the three tables a busy stream appends
            # to, and their indexes, stay in memory between batches.
            self._db.execute("PRAGMA cache_size=-16384")
            migrate(self._db)
            self.recovered = recover_interrupted(self._db)
            if recording:
                set_meta_row(self._db, gaps.STATE_KEY, gaps.RECORDING)
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise StoreError(f"{self.path}: {exc}") from None
        except StoreError:
            self._release_lock()
            raise
        create_private(self.path)  # the -wal/-shm files exist now
        # One counter per table: `next()` on an itertools.count is atomic under the GIL, so the
        # writer thread (gap flags) and the producer can both take ids without a lock.
        self._next: dict[str, Iterator[int]] = {}
        for table in TABLES:
            (last,) = self._db.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
            self._next[table] = itertools.count(last + 1)
        self._columns: dict[str, tuple[str, ...]] = {
            table: tuple(r[1] for r in self._db.execute(f"PRAGMA table_info({table})"))
            for table in TABLES
        }
        # Per event type stored by one insert: its table, statement, and how an event becomes
        # its parameters. Always a plain tuple: sqlite3 binds a tuple subclass (a NamedTuple)
        # through the sequence protocol, about 1 us more per row of twelve columns than an
        # exact tuple, far more than the copy costs.
        self._event_inserts: dict[type, tuple[str, str, Callable[[Any], tuple[Any, ...]]]] = {
            kind: (table, self._insert_sql(table, columns),
                   tuple if len(columns) == len(kind._fields)  # type: ignore[attr-defined]
                   else operator.itemgetter(slice(0, len(columns))))
            for kind, (table, columns) in INSERTS.items()}
        # The event type stored in each of those tables (one each).
        self._table_kinds = {table: kind for kind, (table, _) in INSERTS.items()}
        assert len(self._table_kinds) == len(INSERTS)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Operations are appended here and handed to the thread in lists (`submit`): one queue
        # operation per batch, not three per SSE event. Producer thread only.
        self._buffer: list[Any] = []
        self._submitted = 0
        self._taken = 0
        self._batch_seconds = batch_seconds
        self._report = report or _print_line
        self._error: BaseException | None = None
        self._closed = False
        # Write-failure bookkeeping (writer thread only, read by the owner after close).
        self._retry: list[Any] = []
        self._lost: dict[tuple[int | None, int | None], list[Any]] = {}
        self._failing_since: float | None = None
        self.failures = 0
        self.gaps_written = 0
        self.unwritten_gaps: list[gaps.CaptureGap] = []
        self._thread = threading.Thread(target=self._run, name="ssetap-store-writer", daemon=True)
        self._thread.start()

    # Producer side (any thread) --------------------------------------------------------------

    def next_id(self, table: str) -> int:
        return next(self._next[table])

    def write(self, event: Event) -> None:
        """Queue an event; the writer thread turns it into its rows."""
        # Queued as it is, not in an operation tuple: an event is never an exact tuple (they
        # are NamedTuples), so the writer tells the two apart by type. That saves a tuple per
        # event to build here and to free in the writer thread.
        buffer = self._buffer
        buffer.append(event)
        if len(buffer) >= _SUBMIT_EVERY:
            self.submit()

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self._put(("i", table, row))

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        if changes:
            self._put(("u", table, row_id, changes))

    def record_gap(self, gap: gaps.CaptureGap) -> None:
        """Queue a `capture_gaps` row and its `capture-gap` flag."""
        self._put(self._gap_op(gap))

    def _gap_op(self, gap: gaps.CaptureGap) -> tuple[str, gaps.CaptureGap, tuple[int, int]]:
        # Its ids are taken once, here: a batch that fails is retried with the same op, so
        # a retried gap keeps its ids.
        return ("g", gap, (self.next_id("capture_gaps"), self.next_id("flags")))

    def submit(self) -> None:
        """Hand what was queued so far to the writer thread (the recorder does this after
        each read and tick; `flush` and `close` do it too)."""
        if self._buffer:
            ops, self._buffer = self._buffer, []
            self._submitted += len(ops)
            self._queue.put(("B", ops))

    def _put(self, op: Any) -> None:
        self._buffer.append(op)
        if len(self._buffer) >= _SUBMIT_EVERY:
            self.submit()

    def backlog(self) -> int:
        """Operations queued and not yet applied (approximate)."""
        return self._submitted - self._taken + len(self._buffer) + len(self._retry)

    @property
    def complete(self) -> bool:
        """No write ever failed (what was dropped, if anything, is in no gap either)."""
        return self.failures == 0

    def set_meta(self, key: str, value: str) -> None:
        self._put(("m", key, value))

    def delete_where(self, table: str, column: str, value: Any) -> None:
        """Queue `DELETE FROM table WHERE column = value` (check replacing its own flags)."""
        if table not in self._columns or column not in self._columns[table]:
            raise StoreError(f"unknown column {table}.{column}")
        self._put(("d", table, column, value))

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every operation queued before this call is applied (or failed)."""
        done = threading.Event()
        self.submit()
        self._queue.put(("f", done))
        if not done.wait(timeout):
            raise StoreError("the capture writer did not catch up in time")
        if self._error is not None:
            raise StoreError(f"writing the capture failed: {self._error}")

    def close(self, timeout: float | None = None) -> None:
        """Apply what is queued and close; raises StoreError if a write failed for good.

        With `timeout`, gives up waiting for the writer thread after that long (the thread is
        a daemon: what it had not written is lost with the process, and the capture stays
        marked as recording, so its next opening marks it interrupted)."""
        if self._closed:
            return
        self._closed = True
        self.submit()
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StoreError("the capture writer did not finish in time")
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass  # a reader holding the WAL open only delays the checkpoint
        self._db.close()
        self._release_lock()
        if self._error is not None:
            raise StoreError(f"writing the capture failed: {self._error}")

    def _release_lock(self) -> None:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
        finally:
            try:
                os.unlink(f"{self.path}.lock")
            except OSError:
                pass

    # Writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        backoff = 0.0
        while not stop:
            if self._retry and backoff:
                # Failing: wait before the next attempt, but keep taking what comes (the
                # producer's backlog stays bounded; a stop request ends the wait).
                batch, waiters, stop = self._take(backoff)
            else:
                batch, waiters, stop = self._take(None)
            ops = self._retry
            self._retry = []
            ops += batch
            if ops:
                failure = self._attempt(ops)
                if failure is None:
                    backoff = 0.0
                    if self._failing_since is not None:
                        self._resumed()
                else:
                    backoff = min(max(backoff * 2, 0.1), 2.0)
                    self._failed(ops, failure)
            for waiter in waiters:
                waiter.set()
        if self._retry or self._lost:
            # Last chance on close: one more attempt; what still cannot be written is reported.
            if self._retry and self._attempt(self._retry) is None:
                self._retry = []
            if self._lost and self._failing_since is not None:
                self._resumed()
            if self._lost or self._retry:
                self.unwritten_gaps += self._lost_gaps()
                self._lost.clear()
                self._retry = []

    def _take(self, wait: float | None) -> tuple[list[Any], list[threading.Event], bool]:
        """A batch: the operations queued, the flushes waiting for them, whether to stop.

        Flush requests and the stop request are queue items of their own, never inside a
        submitted list, so the operations are concatenated without a look at each."""
        get, get_nowait = self._queue.get, self._queue.get_nowait
        waiters: list[threading.Event] = []
        stop = False
        try:
            item = get() if wait is None else get(timeout=wait)
        except queue.Empty:
            return [], waiters, stop
        batch: list[Any] = []
        deadline = time.monotonic() + self._batch_seconds
        while True:
            if item is None:
                stop = True
            elif item[0] == "B":
                batch += item[1]
                self._taken += len(item[1])
            else:
                waiters.append(item[1])
            if len(batch) >= _BATCH_OPS:
                break
            try:
                item = get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = get(timeout=remaining)
                except queue.Empty:
                    break
        return batch, waiters, stop

    def _attempt(self, ops: list[Any]) -> BaseException | None:
        try:
            self._apply(ops)
        except sqlite3.Error as exc:
            return exc
        except Exception as exc:  # a bug (a bad column): keep the thread alive, report it
            self._error = exc
        return None

    def _failed(self, ops: list[Any], exc: BaseException) -> None:
        self.failures += 1
        if self._failing_since is None:
            self._failing_since = time.time()
            self._report(f"ssetap: error: writing the capture failed: {exc}; traffic still "
                         "flows, writing is retried, and what cannot be written is recorded "
                         "as a gap")
        kept: list[Any] = []
        for op in ops:
            if type(op) in DATA_EVENTS:
                self._account_lost(op)
            elif type(op) is tuple and op[0] == "i" and op[1] in _DATA_TABLES:
                # a row of an offline tool
                self._account_lost(next(events_of(op[1], op[2])))
            else:
                kept.append(op)
        self._retry = kept

    def _account_lost(self, event: Any) -> None:
        """Count a data row that could not be written (a chunk, SSE item or message) into the
        write-failed gap of its stream (messages off streams: of their exchange)."""
        kind = type(event)
        key = (event.stream_id, event.exchange_id if kind is MessageSeen else None)
        session_id = None if kind is ChunkStored else event.session_id
        t = event.t or time.time()
        entry = self._lost.get(key)
        if entry is None:
            # [session, first t, last t, bytes, chunks, events, first offset]
            entry = self._lost[key] = [session_id, t, t, 0, 0, 0, None]
        entry[1] = min(entry[1], t)
        entry[2] = max(entry[2], t)
        if kind is ChunkStored:
            entry[3] += len(event.data)
            entry[4] += 1
            if entry[6] is None or event.offset < entry[6]:
                entry[6] = event.offset
        elif kind is SseSeen and event.kind == "event":
            entry[5] += 1
        if entry[0] is None:
            entry[0] = session_id

    def _lost_gaps(self) -> list[gaps.CaptureGap]:
        return [gaps.CaptureGap(gaps.WRITE_FAILED, first, last, bytes=size, chunks=chunks,
                                events=events, session_id=session_id, stream_id=stream_id,
                                exchange_id=exchange_id, start_offset=offset)
                for (stream_id, exchange_id), (session_id, first, last, size, chunks, events,
                                               offset) in self._lost.items()]

    def _resumed(self) -> None:
        lost = self._lost_gaps()
        if self._attempt([self._gap_op(gap) for gap in lost]) is not None:
            return  # still failing: try again with the next batch
        since = self._failing_since or time.time()
        self._failing_since = None
        self._lost.clear()
        self._report(f"ssetap: writing the capture resumed after {time.time() - since:.1f} s; "
                     f"{sum(g.chunks for g in lost):,} chunks ({sum(g.bytes for g in lost):,} "
                     f"bytes) could not be written, recorded as {len(lost)} gaps")

    def _apply(self, ops: list[Any]) -> None:
        db = self._db
        # Inserts are grouped per statement (ids are assigned by producers, so their order across
        # tables does not matter); an update first flushes the pending inserts of its own table,
        # the only rows it can depend on. The hot events (chunks, SSE items, messages) are
        # gathered per type as they are and turned into parameters only when executed.
        pending: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        hot: dict[type, list[Any]] = {}
        event_inserts = self._event_inserts

        def flush_events(kind: type) -> None:
            events = hot.pop(kind, None)
            if events:
                _, sql, parameters = event_inserts[kind]
                db.executemany(sql, map(parameters, events))

        def flush(table: str) -> None:
            kind = self._table_kinds.get(table)
            if kind is not None:
                flush_events(kind)
            for sql, params in pending.pop(table, {}).items():
                db.executemany(sql, params)

        gap_ids: list[tuple[int, int]] = []
        db.execute("BEGIN")
        try:
            for op in ops:
                events = hot.get(type(op))
                if events is not None:  # the hot path: an event of a type seen in this batch
                    events.append(op)
                    continue
                if type(op) is not tuple:  # an event (operations are exact tuples)
                    event = op
                    if type(event) in event_inserts:
                        hot[type(event)] = [event]
                        continue
                    for row_op in operations(event):
                        if row_op[0] == "i":
                            _, table, columns, values = row_op
                            sql = self._insert_sql(table, columns)
                            pending.setdefault(table, {}).setdefault(sql, []).append(values)
                        else:
                            _, table, row_id, changes = row_op
                            flush(table)
                            assignments = ", ".join(f'"{k}" = ?' for k in changes)
                            db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?",
                                       (*changes.values(), row_id))
                elif op[0] == "i":
                    _, table, row = op
                    sql = self._insert_sql(table, tuple(row))
                    pending.setdefault(table, {}).setdefault(sql, []).append(tuple(row.values()))
                elif op[0] == "u":
                    _, table, row_id, changes = op
                    flush(table)
                    assignments = ", ".join(f'"{k}" = ?' for k in changes)
                    db.execute(
                        f"UPDATE {table} SET {assignments} WHERE id = ?",
                        (*changes.values(), row_id),
                    )
                elif op[0] == "g":
                    gap: gaps.CaptureGap = op[1]
                    gap_id, flag_id = op[2]  # taken when it was queued (_gap_op)
                    gap_ids.append((gap_id, flag_id))
                    for table, row in (("capture_gaps", gap.row(gap_id)),
                                       ("flags", gap.flag_row(flag_id, gap_id))):
                        sql = self._insert_sql(table, tuple(row))
                        pending.setdefault(table, {}).setdefault(sql, []).append(
                            tuple(row.values()))
                elif op[0] == "d":
                    _, table, column, value = op
                    flush(table)
                    db.execute(f'DELETE FROM {table} WHERE "{column}" = ?', (value,))
                elif op[0] == "m":
                    set_meta_row(db, op[1], op[2])
            for kind in list(hot):
                flush_events(kind)
            for table in list(pending):
                flush(table)
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk does): a second ROLLBACK would
            # raise "no transaction is active" and hide the real cause.
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        self.gaps_written += len(gap_ids)

    _sql_cache: dict[tuple[str, tuple[str, ...]], str] = {}

    def _insert_sql(self, table: str, keys: tuple[str, ...]) -> str:
        cache_key = (table, keys)
        sql = self._sql_cache.get(cache_key)
        if sql is None:
            unknown = set(keys) - set(self._columns[table])
            if unknown:
                raise StoreError(f"unknown columns for {table}: {sorted(unknown)}")
            cols = ", ".join(f'"{k}"' for k in keys)
            marks = ", ".join("?" for _ in keys)
            sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
            self._sql_cache[cache_key] = sql
        return sql



def insert_many(path: str | os.PathLike[str], table: str, items: Iterable[dict[str, Any]]) -> None:
    """Append rows through a short-lived writer (offline tools: `check` storing its flags)."""
    writer = StoreWriter(path)
    try:
        for item in items:
            writer.insert(table, item)
    finally:
        writer.close()


def replace_flags(path: str | os.PathLike[str], source: str,
                  items: Iterable[dict[str, Any]]) -> int:
    """Delete a capture's flags of one `source` and store `items` in their place (ids are
    assigned here); one short-lived writer, so it fails while a recorder holds the file.
    Returns how many flags were stored."""
    writer = StoreWriter(path)
    count = 0
    try:
        writer.delete_where("flags", "source", source)
        for item in items:
            writer.insert("flags", {**item, "id": writer.next_id("flags"), "source": source})
            count += 1
    finally:
        writer.close()
    return count



def bulk_load(path: str | os.PathLike[str],
              tables: Iterable[tuple[str, Sequence[str], Iterable[Sequence[Any]]]]) -> None:
    """Append rows fast, in one transaction (benchmarks and big fixtures; not for recording).

    `tables` yields (table, columns, rows of values). The single-writer lock is held through
    a `StoreWriter` left idle, which also creates and migrates the file.
    """
    writer = StoreWriter(path)
    try:
        db = sqlite3.connect(writer.path, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=OFF")
            db.execute("BEGIN")
            for table, columns, values in tables:
                unknown = set(columns) - set(writer._columns[table])
                if unknown:
                    raise StoreError(f"unknown columns for {table}: {sorted(unknown)}")
                names = ", ".join(f'"{c}"' for c in columns)
                marks = ", ".join("?" for _ in columns)
                db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)
            db.execute("COMMIT")
        finally:
            db.close()
    finally:
        writer.close()
