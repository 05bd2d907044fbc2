"""The capture store: ssetap's only SQLite code (schema, migrations, writer thread, readers).

Design notes:
- One writer per capture. `StoreWriter` owns the only read-write connection, in its own thread,
  fed by a queue; it commits in batches so a burst of events costs one transaction, not many.
  Row ids are assigned by the caller (`StoreWriter.next_id`), so producers can link rows
  (messages to streams, calls to messages) without waiting for the disk.
- Readers open the file read-only (`mode=ro`) and may run while a recorder writes (WAL mode).
- The file is created private (0600) before SQLite touches it: SQLite would create it 0644 and
  give the -wal/-shm sidecars the same mode.
- The schema is versioned in `meta`; migrations are registered functions applied in order.
"""

from __future__ import annotations

import fcntl
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

FORMAT_NAME = "ssetap-capture"
SCHEMA_VERSION = 1


class StoreError(Exception):
    """A capture file that cannot be opened, created or understood."""


# --- Schema ---------------------------------------------------------------------------------

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    transport TEXT NOT NULL,
    server TEXT NOT NULL,
    endpoint TEXT,
    client_name TEXT,
    client_version TEXT,
    server_name TEXT,
    server_version TEXT,
    protocol_version TEXT,
    requested_protocol_version TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    client_addr TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_key ON sessions(key);
CREATE TABLE exchanges (
    id INTEGER PRIMARY KEY,
    session_id INTEGER REFERENCES sessions(id),
    flow_id TEXT,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER,
    reason TEXT,
    request_headers TEXT NOT NULL,
    response_headers TEXT,
    request_body BLOB,
    response_body BLOB,
    request_content_type TEXT,
    response_content_type TEXT,
    started_at REAL NOT NULL,
    response_at REAL,
    ended_at REAL,
    error TEXT,
    client_addr TEXT,
    streamed INTEGER NOT NULL DEFAULT 0,
    mcp INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX exchanges_session ON exchanges(session_id, id);
CREATE TABLE streams (
    id INTEGER PRIMARY KEY,
    exchange_id INTEGER NOT NULL REFERENCES exchanges(id),
    session_id INTEGER REFERENCES sessions(id),
    method TEXT NOT NULL,
    role TEXT NOT NULL,
    last_event_id_sent TEXT,
    opened_at REAL NOT NULL,
    first_byte_at REAL,
    closed_at REAL,
    close_reason TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    comments INTEGER NOT NULL DEFAULT 0,
    max_gap_ms REAL,
    truncated INTEGER NOT NULL DEFAULT 0,
    retry_ms INTEGER,
    content_encoding TEXT
);
CREATE INDEX streams_session ON streams(session_id, id);
CREATE INDEX streams_exchange ON streams(exchange_id);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams(id),
    seq INTEGER NOT NULL,
    t REAL NOT NULL,
    offset INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX chunks_stream ON chunks(stream_id, seq);
CREATE TABLE sse_events (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams(id),
    session_id INTEGER REFERENCES sessions(id),
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    type TEXT,
    data TEXT,
    event_id TEXT,
    last_event_id TEXT,
    retry INTEGER,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL
);
CREATE INDEX sse_events_stream ON sse_events(stream_id, id);
CREATE INDEX sse_events_session ON sse_events(session_id, id);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    session_id INTEGER REFERENCES sessions(id),
    exchange_id INTEGER REFERENCES exchanges(id),
    stream_id INTEGER REFERENCES streams(id),
    sse_event_id INTEGER REFERENCES sse_events(id),
    t REAL NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    rpc_id TEXT,
    method TEXT,
    batch_index INTEGER,
    json TEXT,
    problem TEXT,
    call_id INTEGER
);
CREATE INDEX messages_session ON messages(session_id, id);
CREATE INDEX messages_call ON messages(call_id);
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    session_id INTEGER REFERENCES sessions(id),
    direction TEXT NOT NULL,
    rpc_id TEXT NOT NULL,
    method TEXT NOT NULL,
    name TEXT,
    request_message_id INTEGER REFERENCES messages(id),
    response_message_id INTEGER REFERENCES messages(id),
    sent_at REAL NOT NULL,
    answered_at REAL,
    latency_ms REAL,
    outcome TEXT NOT NULL,
    error_code INTEGER,
    error_message TEXT,
    progress_token TEXT,
    progress_count INTEGER NOT NULL DEFAULT 0,
    last_progress_at REAL,
    cancelled_at REAL,
    cancel_message_id INTEGER,
    cancel_reason TEXT,
    late INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX calls_session ON calls(session_id, id);
CREATE TABLE flags (
    id INTEGER PRIMARY KEY,
    session_id INTEGER REFERENCES sessions(id),
    stream_id INTEGER,
    message_id INTEGER,
    call_id INTEGER,
    exchange_id INTEGER,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT,
    source TEXT NOT NULL DEFAULT 'live'
);
CREATE INDEX flags_session ON flags(session_id, id);
"""

TABLES = ("sessions", "exchanges", "streams", "chunks", "sse_events", "messages", "calls", "flags")


def _migrate_to_1(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA_V1)
    db.execute("INSERT INTO meta(key, value) VALUES ('format', ?)", (FORMAT_NAME,))
    db.execute("INSERT INTO meta(key, value) VALUES ('created_at', ?)", (repr(time.time()),))


# Registered migrations: index i brings the schema from version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1]


def schema_version(db: sqlite3.Connection) -> int:
    """The schema version of an open capture, 0 for an empty file."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if not has_meta:
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError("not an ssetap capture (an SQLite database without ssetap's tables)")
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
    if not row or row[0] != FORMAT_NAME:
        raise StoreError("not an ssetap capture (its meta table does not name the format)")
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 1


def migrate(db: sqlite3.Connection) -> int:
    """Apply every pending migration, each in its own transaction; returns the new version."""
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"capture schema v{version} is newer than this ssetap (v{SCHEMA_VERSION}); upgrade ssetap"
        )
    while version < SCHEMA_VERSION:
        with db:
            MIGRATIONS[version](db)
            version += 1
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(version),),
            )
    return version


# --- Private files --------------------------------------------------------------------------


def create_private(path: Path) -> None:
    """Create `path` with mode 0600 if it does not exist; tighten it (and sidecars) if it does.

    The capture directory is created 0700 when missing. Symlinks are refused: a capture holds
    traffic, and a link could point it anywhere.
    """
    if path.is_symlink():
        raise StoreError(f"{path} is a symbolic link; refusing to write a capture through it")
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            st = candidate.lstat()
        except FileNotFoundError:
            continue
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(candidate, 0o600)


# --- Writer ---------------------------------------------------------------------------------


class StoreWriter:
    """The single writer of a capture: a thread that applies queued operations in batches.

    Operations are `insert(table, row)` and `update(table, id, changes)`; `flush()` waits until
    everything queued so far is committed. Ids come from `next_id(table)`.
    """

    def __init__(self, path: str | os.PathLike[str], *, batch_seconds: float = 0.05) -> None:
        self.path = Path(path)
        create_private(self.path)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreError(f"{self.path} is being written by another ssetap recorder") from None
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise StoreError(f"{self.path}: {exc}") from None
        except StoreError:
            self._release_lock()
            raise
        create_private(self.path)  # the -wal/-shm files exist now
        self._next: dict[str, int] = {}
        for table in TABLES:
            (last,) = self._db.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
            self._next[table] = last + 1
        self._columns: dict[str, tuple[str, ...]] = {
            table: tuple(r[1] for r in self._db.execute(f"PRAGMA table_info({table})"))
            for table in TABLES
        }
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch_seconds = batch_seconds
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ssetap-store-writer", daemon=True)
        self._thread.start()

    # Producer side (any thread) --------------------------------------------------------------

    def next_id(self, table: str) -> int:
        value = self._next[table]
        self._next[table] = value + 1
        return value

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self._queue.put(("i", table, row))

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        if changes:
            self._queue.put(("u", table, row_id, changes))

    def set_meta(self, key: str, value: str) -> None:
        self._queue.put(("m", key, value))

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every operation queued before this call is committed."""
        done = threading.Event()
        self._queue.put(("f", done))
        if not done.wait(timeout):
            raise StoreError("the capture writer did not catch up in time")
        if self._error is not None:
            raise StoreError(f"writing the capture failed: {self._error}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
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
        while not stop:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self._batch_seconds
            while len(batch) < 20000:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=max(remaining, 0)) if remaining > 0
                                 else self._queue.get_nowait())
                except queue.Empty:
                    break
            waiters = []
            ops = []
            for op in batch:
                if op is None:
                    stop = True
                elif op[0] == "f":
                    waiters.append(op[1])
                else:
                    ops.append(op)
            if ops and self._error is None:
                try:
                    self._apply(ops)
                except Exception as exc:  # keep the thread alive so flush/close report it
                    self._error = exc
            for waiter in waiters:
                waiter.set()

    def _apply(self, ops: list[Any]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            # Consecutive inserts into one table with the same keys go in one executemany.
            pending_sql: str | None = None
            pending_rows: list[tuple[Any, ...]] = []
            for op in ops:
                if op[0] == "i":
                    _, table, row = op
                    keys = tuple(row)
                    sql = self._insert_sql(table, keys)
                    if sql != pending_sql and pending_rows:
                        db.executemany(pending_sql, pending_rows)  # type: ignore[arg-type]
                        pending_rows = []
                    pending_sql = sql
                    pending_rows.append(tuple(row.values()))
                    continue
                if pending_rows:
                    db.executemany(pending_sql, pending_rows)  # type: ignore[arg-type]
                    pending_rows = []
                    pending_sql = None
                if op[0] == "u":
                    _, table, row_id, changes = op
                    assignments = ", ".join(f'"{k}" = ?' for k in changes)
                    db.execute(
                        f"UPDATE {table} SET {assignments} WHERE id = ?",
                        (*changes.values(), row_id),
                    )
                elif op[0] == "m":
                    db.execute(
                        "INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (op[1], op[2]),
                    )
            if pending_rows:
                db.executemany(pending_sql, pending_rows)  # type: ignore[arg-type]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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


# --- Readers --------------------------------------------------------------------------------


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open a capture read-only, checking that it is one; raises StoreError otherwise."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: no such file")
    if p.is_dir():
        raise StoreError(f"{p} is a directory, not a capture file")
    try:
        db = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True, check_same_thread=False)
        db.row_factory = sqlite3.Row
        version = schema_version(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{p}: not a readable SQLite capture ({exc})") from None
    if version == 0:
        db.close()
        raise StoreError(f"{p}: empty file, not an ssetap capture")
    if version > SCHEMA_VERSION:
        db.close()
        raise StoreError(f"{p}: capture schema v{version} is newer than this ssetap")
    return db


def rows(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run a read query and return plain dicts."""
    try:
        cursor = db.execute(sql, params)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"reading the capture failed: {exc}") from None
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


def iter_rows(
    db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()
) -> Iterator[dict[str, Any]]:
    """Stream the rows of a read query as dicts (for captures too big to hold at once)."""
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description or ()]
    for r in cursor:
        yield dict(zip(names, r))


def meta(db: sqlite3.Connection) -> dict[str, str]:
    return {r["key"]: r["value"] for r in rows(db, "SELECT key, value FROM meta")}


def insert_many(path: str | os.PathLike[str], table: str, items: Iterable[dict[str, Any]]) -> None:
    """Append rows through a short-lived writer (offline tools: `check` storing its flags)."""
    writer = StoreWriter(path)
    try:
        for item in items:
            writer.insert(table, item)
    finally:
        writer.close()


class Capture:
    """Read-only queries over one capture (used by the CLI, the TUI and replay)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.db = open_readonly(path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta(self) -> dict[str, str]:
        return meta(self.db)

    _SESSION_SUMMARY = """
        SELECT s.*,
          (SELECT count(*) FROM messages m WHERE m.session_id = s.id) AS messages,
          (SELECT count(*) FROM calls c WHERE c.session_id = s.id) AS requests,
          (SELECT count(*) FROM calls c WHERE c.session_id = s.id
             AND c.outcome IN ('result', 'error')) AS answered,
          (SELECT count(*) FROM calls c WHERE c.session_id = s.id
             AND c.outcome = 'pending') AS pending,
          (SELECT count(*) FROM flags f WHERE f.session_id = s.id) AS flags,
          (SELECT count(*) FROM flags f WHERE f.session_id = s.id
             AND f.severity = 'error') AS flag_errors,
          (SELECT count(*) FROM flags f WHERE f.session_id = s.id
             AND f.severity = 'warning') AS flag_warnings,
          (SELECT count(*) FROM flags f WHERE f.session_id = s.id
             AND f.severity = 'info') AS flag_infos
        FROM sessions s
    """

    def sessions(self, *, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        sql = self._SESSION_SUMMARY + " WHERE s.id > ? ORDER BY s.id"
        params: list[Any] = [after_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return rows(self.db, sql, params)

    def session(self, session_id: int) -> dict[str, Any] | None:
        found = rows(self.db, self._SESSION_SUMMARY + " WHERE s.id = ?", (session_id,))
        return found[0] if found else None

    def find_session(self, ref: str) -> dict[str, Any] | None:
        """A session by its number, or by a unique prefix of its key."""
        if ref.isdigit():
            return self.session(int(ref))
        found = rows(self.db, "SELECT id FROM sessions WHERE key = ? OR key LIKE ? LIMIT 2",
                     (ref, ref + "%"))
        return self.session(found[0]["id"]) if len(found) == 1 else None

    def calls(self, session_id: int) -> list[dict[str, Any]]:
        return rows(self.db, "SELECT * FROM calls WHERE session_id = ? ORDER BY sent_at, id",
                    (session_id,))

    def streams(self, session_id: int) -> list[dict[str, Any]]:
        return rows(self.db, "SELECT * FROM streams WHERE session_id = ? ORDER BY opened_at, id",
                    (session_id,))

    def exchanges(self, session_id: int | None) -> list[dict[str, Any]]:
        if session_id is None:
            return rows(self.db, "SELECT * FROM exchanges WHERE session_id IS NULL ORDER BY id")
        return rows(self.db, "SELECT * FROM exchanges WHERE session_id = ? ORDER BY id",
                    (session_id,))

    def exchange(self, exchange_id: int) -> dict[str, Any] | None:
        found = rows(self.db, "SELECT * FROM exchanges WHERE id = ?", (exchange_id,))
        return found[0] if found else None

    def messages(self, session_id: int, *, after_id: int = 0,
                 limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM messages WHERE session_id = ? AND id > ? ORDER BY id"
        params: list[Any] = [session_id, after_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return rows(self.db, sql, params)

    def sse_events(self, stream_id: int) -> list[dict[str, Any]]:
        return rows(self.db, "SELECT * FROM sse_events WHERE stream_id = ? ORDER BY id",
                    (stream_id,))

    def chunks(self, stream_id: int) -> list[dict[str, Any]]:
        return rows(self.db, "SELECT * FROM chunks WHERE stream_id = ? ORDER BY offset, id",
                    (stream_id,))

    def flags(self, session_id: int | None = None) -> list[dict[str, Any]]:
        if session_id is None:
            return rows(self.db, "SELECT * FROM flags ORDER BY t, id")
        return rows(self.db, "SELECT * FROM flags WHERE session_id = ? ORDER BY t, id",
                    (session_id,))

    def counts(self) -> dict[str, int]:
        return {t: rows(self.db, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in TABLES}
