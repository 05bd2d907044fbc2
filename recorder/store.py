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
SCHEMA_VERSION = 2


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

TABLES = ("sessions", "exchanges", "streams", "chunks", "sse_events", "messages", "calls", "flags",
          "injections")


def _migrate_to_1(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA_V1)
    db.execute("INSERT INTO meta(key, value) VALUES ('format', ?)", (FORMAT_NAME,))
    db.execute("INSERT INTO meta(key, value) VALUES ('created_at', ?)", (repr(time.time()),))


def _migrate_add_injections(db: sqlite3.Connection) -> None:
    """Issue 12: what `--fault` changed on purpose (one row per change; see recorder.faults)."""
    db.executescript("""
CREATE TABLE injections (
    id INTEGER PRIMARY KEY,
    session_id INTEGER REFERENCES sessions(id),
    exchange_id INTEGER,
    stream_id INTEGER,
    t REAL NOT NULL,
    spec TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX injections_exchange ON injections(exchange_id);
""")


# Registered migrations: index i brings the schema from version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1, _migrate_add_injections]


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

    def backlog(self) -> int:
        """Operations queued and not yet applied (approximate)."""
        return self._queue.qsize()

    def set_meta(self, key: str, value: str) -> None:
        self._queue.put(("m", key, value))

    def delete_where(self, table: str, column: str, value: Any) -> None:
        """Queue `DELETE FROM table WHERE column = value` (check replacing its own flags)."""
        if table not in self._columns or column not in self._columns[table]:
            raise StoreError(f"unknown column {table}.{column}")
        self._queue.put(("d", table, column, value))

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
        # Inserts are grouped per statement (ids are assigned by producers, so their order across
        # tables does not matter); an update first flushes the pending inserts of its own table,
        # the only rows it can depend on.
        pending: dict[str, dict[str, list[tuple[Any, ...]]]] = {}

        def flush(table: str) -> None:
            for sql, params in pending.pop(table, {}).items():
                db.executemany(sql, params)

        db.execute("BEGIN")
        try:
            for op in ops:
                if op[0] == "i":
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
                elif op[0] == "d":
                    _, table, column, value = op
                    flush(table)
                    db.execute(f'DELETE FROM {table} WHERE "{column}" = ?', (value,))
                elif op[0] == "m":
                    db.execute(
                        "INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (op[1], op[2]),
                    )
            for table in list(pending):
                flush(table)
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

    def table_rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Every row of one table in id order, streamed (`ssetap redact` rewrites them all)."""
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}")
        return _iter_checked(self.db, f"SELECT * FROM {table} ORDER BY id", [])

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

    def injections(self) -> list[dict[str, Any]]:
        """Every change `--fault` made, with its session (from its exchange when not known)."""
        return rows(self.db, "SELECT i.*, coalesce(i.session_id, x.session_id) AS session "
                    "FROM injections i LEFT JOIN exchanges x ON x.id = i.exchange_id "
                    "ORDER BY i.t, i.id")

    def counts(self) -> dict[str, int]:
        return {t: rows(self.db, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in TABLES}

    def session_sse_events(self, session_id: int) -> list[dict[str, Any]]:
        """Every SSE event and comment of a session's streams, in arrival order (replay, mock)."""
        return rows(self.db, "SELECT e.* FROM sse_events e JOIN streams s ON s.id = e.stream_id "
                    "WHERE s.session_id = ? ORDER BY e.id", (session_id,))

    # Stream-health checks (recorder.check): every fact, each source in time order ------------

    def health_exchanges(self, moment: str) -> Iterator[dict[str, Any]]:
        """Exchanges ordered by one of their moments: `started_at`, `response_at`, `ended_at`.

        Request and response bodies are left out, except the head of a 400 answer's body
        (it says whether a session was not found)."""
        if moment not in ("started_at", "response_at", "ended_at"):
            raise StoreError(f"not an exchange moment: {moment}")
        return _iter_checked(self.db, f"""
            SELECT id, session_id, flow_id, method, url, path, status, reason, request_headers,
                   response_headers, request_content_type, response_content_type, started_at,
                   response_at, ended_at, error, client_addr, streamed, mcp,
                   CASE WHEN status = 400 THEN substr(response_body, 1, 4096) END
                     AS response_body
            FROM exchanges WHERE {moment} IS NOT NULL ORDER BY {moment}, id""")

    def health_sessions(self) -> Iterator[dict[str, Any]]:
        return _iter_checked(self.db, "SELECT * FROM sessions ORDER BY started_at, id")

    def health_streams(self, moment: str) -> Iterator[dict[str, Any]]:
        """Streams ordered by `opened_at` or `closed_at` (open streams only by the former)."""
        if moment not in ("opened_at", "closed_at"):
            raise StoreError(f"not a stream moment: {moment}")
        return _iter_checked(self.db, f"SELECT * FROM streams WHERE {moment} IS NOT NULL "
                             f"ORDER BY {moment}, id")

    def health_chunks(self) -> Iterator[dict[str, Any]]:
        """Chunk sizes and times, without their bytes."""
        return _iter_checked(self.db, "SELECT id, stream_id, seq, t, length(data) AS size "
                             "FROM chunks ORDER BY t, stream_id, id")

    def health_sse_events(self) -> Iterator[dict[str, Any]]:
        """SSE items with their data cut to 64 characters ("" stays "": priming events)."""
        return _iter_checked(self.db, """
            SELECT id, stream_id, session_id, t, kind, type, substr(data, 1, 64) AS data,
                   event_id, last_event_id, retry, start, "end"
            FROM sse_events ORDER BY t, stream_id, id""")

    def health_messages(self, *, on_streams: bool) -> Iterator[dict[str, Any]]:
        """Messages carried by SSE events (ordered as their events) or by HTTP bodies."""
        if on_streams:
            return _iter_checked(self.db, "SELECT * FROM messages WHERE sse_event_id IS NOT NULL "
                                 "ORDER BY t, stream_id, sse_event_id, id")
        return _iter_checked(self.db, "SELECT * FROM messages WHERE sse_event_id IS NULL "
                             "ORDER BY t, exchange_id, id")

    def flags_by_source(self, source: str) -> list[dict[str, Any]]:
        return rows(self.db, "SELECT * FROM flags WHERE source = ? ORDER BY t, id", (source,))


def _iter_checked(db: sqlite3.Connection, sql: str,
                  params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
    """`iter_rows`, with SQLite errors turned into StoreError (a damaged capture)."""
    try:
        yield from iter_rows(db, sql, params)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"reading the capture failed: {exc}") from None


# --- Browsing (the TUI's reads) ---------------------------------------------------------------


# The timeline's tables and the column that dates their rows.
_TIMELINE_TIME_COLUMNS = {"exchanges": "started_at", "streams": "opened_at", "sse_events": "t",
                          "messages": "t"}


class BrowseReader(Capture):
    """Reads for an interactive browser: keyset pages of timeline keys, rows by id, details.

    Every list read is a keyset page over an index (`session_id = ? AND id > ? ORDER BY id
    LIMIT ?`), so a page costs the same at the start and at the end of a 500k-row session;
    rows for display are fetched by primary key. One reader per thread: SQLite connections
    are cheap, and a long scan on one never blocks page loads on another.
    """

    def data_version(self) -> int:
        """Changes whenever another connection commits (cheap change detection for live tail)."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def session_rows(self, *, after_id: int = 0,
                     session_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Sessions without counts: instant on any capture (the table's first paint)."""
        if session_ids is not None:
            marks = ",".join("?" * len(session_ids))
            return rows(self.db, f"SELECT * FROM sessions WHERE id IN ({marks}) ORDER BY id",
                        list(session_ids)) if session_ids else []
        return rows(self.db, "SELECT * FROM sessions WHERE id > ? ORDER BY id", (after_id,))

    def session_counts(self, session_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
        """The counts of `Capture.sessions` per session, each table read in one grouped pass
        (one pass over 1M messages instead of one subquery per session and column)."""
        where, params = "", []
        if session_ids is not None:
            if not session_ids:
                return {}
            where = f" WHERE session_id IN ({','.join('?' * len(session_ids))})"
            params = list(session_ids)
        counts: dict[int, dict[str, int]] = {}

        def bucket(session_id: int) -> dict[str, int]:
            return counts.setdefault(session_id, {
                "messages": 0, "requests": 0, "answered": 0, "pending": 0, "flags": 0,
                "flag_errors": 0, "flag_warnings": 0, "flag_infos": 0})

        for sid, count in self._tuples("SELECT session_id, count(*) FROM messages" + where +
                                       " GROUP BY session_id", params):
            if sid is not None:
                bucket(sid)["messages"] = count
        for sid, requests, answered, pending in self._tuples(
                "SELECT session_id, count(*), sum(outcome IN ('result', 'error')), "
                "sum(outcome = 'pending') FROM calls" + where + " GROUP BY session_id", params):
            if sid is not None:
                bucket(sid).update(requests=requests, answered=answered, pending=pending)
        for sid, severity, count in self._tuples(
                "SELECT session_id, severity, count(*) FROM flags" + where +
                " GROUP BY session_id, severity", params):
            if sid is not None:
                entry = bucket(sid)
                entry["flags"] += count
                key = {"error": "flag_errors", "warning": "flag_warnings",
                       "info": "flag_infos"}.get(severity)
                if key:
                    entry[key] += count
        return counts

    def call_latencies(self, session_ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """(session_id, latency_ms) of every answered call, for percentiles."""
        sql = "SELECT session_id, latency_ms FROM calls WHERE latency_ms IS NOT NULL"
        params: list[Any] = []
        if session_ids is not None:
            sql += f" AND session_id IN ({','.join('?' * len(session_ids))})"
            params = list(session_ids)
        return self._tuples(sql, params)

    # Timeline keys: (id, time) pages per source, in id order ---------------------------------
    #
    # Each takes `after_id` and either `limit` (a page of matches) or `until_id` (every match
    # in the id window (after_id, until_id]). A filter that matches rarely would make a page of
    # matches scan the whole session; windows cut by `window_end` keep every page's work
    # bounded by the window, whatever the filter.

    def window_end(self, table: str, session_id: int, *, after_id: int,
                   rows_in_window: int) -> tuple[int, float] | None:
        """(id, time) of the session's `rows_in_window`-th row after `after_id` in `table`,
        or None when fewer rows remain (the window then runs to the end)."""
        if table not in _TIMELINE_TIME_COLUMNS:
            raise StoreError(f"no timeline table {table!r}")
        column = _TIMELINE_TIME_COLUMNS[table]
        found = self._tuples(f"SELECT id, {column} FROM {table} WHERE session_id = ? AND id > ? "
                             "ORDER BY id LIMIT 1 OFFSET ?",
                             [session_id, after_id, rows_in_window - 1])
        return (int(found[0][0]), float(found[0][1])) if found else None

    def last_id(self, table: str, session_id: int) -> int | None:
        """The session's last row id in `table` (an index lookup)."""
        if table not in _TIMELINE_TIME_COLUMNS:
            raise StoreError(f"no timeline table {table!r}")
        found = self._tuples(f"SELECT max(id) FROM {table} WHERE session_id = ?", [session_id])
        return int(found[0][0]) if found and found[0][0] is not None else None

    def _keys(self, sql: str, params: list[Any], id_column: str, after_id: int,
              limit: int | None, until_id: int | None) -> list[Any]:
        sql += f" AND {id_column} > ?"
        params = [*params, after_id]
        if until_id is not None:
            sql += f" AND {id_column} <= ?"
            params.append(until_id)
        sql += f" ORDER BY {id_column}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._tuples(sql, params)

    def exchange_keys(self, session_id: int, *, after_id: int = 0, limit: int | None = 10_000,
                      until_id: int | None = None, flagged_only: bool = False,
                      ) -> list[tuple[int, float]]:
        sql = "SELECT id, started_at FROM exchanges WHERE session_id = ?"
        params: list[Any] = [session_id]
        if flagged_only:
            # Flags about the exchange itself, not about a message, call or stream it carried.
            sql += (" AND id IN (SELECT exchange_id FROM flags WHERE session_id = ? AND "
                    "message_id IS NULL AND call_id IS NULL AND stream_id IS NULL)")
            params.append(session_id)
        return self._keys(sql, params, "id", after_id, limit, until_id)

    def stream_keys(self, session_id: int, *, after_id: int = 0, limit: int | None = 10_000,
                    until_id: int | None = None, flagged_only: bool = False,
                    ) -> list[tuple[int, float, float | None]]:
        """(id, opened_at, closed_at) of the session's SSE streams."""
        sql = "SELECT id, opened_at, closed_at FROM streams WHERE session_id = ?"
        params: list[Any] = [session_id]
        if flagged_only:
            # Flags about the stream itself (a gap, a truncation), not a message it carried.
            sql += (" AND id IN (SELECT stream_id FROM flags WHERE session_id = ? AND "
                    "message_id IS NULL AND call_id IS NULL)")
            params.append(session_id)
        return self._keys(sql, params, "id", after_id, limit, until_id)

    def stream_closes(self, stream_ids: Sequence[int]) -> list[tuple[int, float]]:
        """(id, closed_at) of those streams that have closed (live tail of open streams)."""
        if not stream_ids:
            return []
        marks = ",".join("?" * len(stream_ids))
        return self._tuples(f"SELECT id, closed_at FROM streams WHERE id IN ({marks}) "
                            "AND closed_at IS NOT NULL", list(stream_ids))

    def sse_keys(self, session_id: int, *, after_id: int = 0, limit: int | None = 10_000,
                 until_id: int | None = None, comments: bool = True, others: bool = True,
                 ) -> list[tuple[int, float]]:
        """SSE items that carry no JSON-RPC message: comments (heartbeats) and/or the rest
        (endpoint and other named events, control blocks, incomplete and oversize bytes).
        Events of type `message` are left out: their messages stand for them."""
        if comments and others:
            kind = "(kind != 'event' OR type IS NOT 'message')"
        elif comments:
            kind = "kind = 'comment'"
        elif others:
            kind = "((kind != 'event' AND kind != 'comment') OR (kind = 'event' " \
                   "AND type IS NOT 'message'))"
        else:
            return []
        return self._keys(f"SELECT id, t FROM sse_events WHERE session_id = ? AND {kind}",
                          [session_id], "id", after_id, limit, until_id)

    def message_keys(self, session_id: int, *, after_id: int = 0, limit: int | None = 10_000,
                     until_id: int | None = None, methods: Sequence[str] = (),
                     directions: Sequence[str] = (), kinds: Sequence[str] = (),
                     flagged_only: bool = False) -> list[tuple[int, float]]:
        where, params = self._message_where(session_id, methods, directions, kinds, flagged_only)
        return self._keys(f"SELECT m.id, m.t FROM messages m WHERE {where}", params, "m.id",
                          after_id, limit, until_id)

    def _message_where(self, session_id: int, methods: Sequence[str], directions: Sequence[str],
                       kinds: Sequence[str], flagged_only: bool) -> tuple[str, list[Any]]:
        clauses = ["m.session_id = ?"]
        params: list[Any] = [session_id]
        if methods:
            # A result names no method: it matches through its call, and so do progress
            # notifications and cancellations tied to a call of that method.
            marks = ",".join("?" * len(methods))
            clauses.append(f"(m.method IN ({marks}) OR m.call_id IN (SELECT id FROM calls "
                           f"WHERE session_id = ? AND method IN ({marks})))")
            params += [*methods, session_id, *methods]
        if directions:
            clauses.append(f"m.direction IN ({','.join('?' * len(directions))})")
            params += list(directions)
        if kinds:
            clauses.append(f"m.kind IN ({','.join('?' * len(kinds))})")
            params += list(kinds)
        if flagged_only:
            clauses.append("(m.id IN (SELECT message_id FROM flags WHERE session_id = ?) "
                           "OR m.call_id IN (SELECT call_id FROM flags WHERE session_id = ?))")
            params += [session_id, session_id]
        return " AND ".join(clauses), params

    def find_message(self, session_id: int, text: str, *, after_id: int | None = None,
                     before_id: int | None = None, methods: Sequence[str] = (),
                     directions: Sequence[str] = (), kinds: Sequence[str] = (),
                     flagged_only: bool = False,
                     should_stop: Callable[[], bool] | None = None) -> int | None:
        """The next (or, with before_id, previous) message whose JSON or method contains
        `text` (ASCII case-insensitive). `should_stop` aborts a long scan (incremental search
        starts a new one at every keystroke); an aborted scan returns None."""
        where, params = self._message_where(session_id, methods, directions, kinds, flagged_only)
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where += " AND (m.json LIKE ? ESCAPE '\\' OR m.method LIKE ? ESCAPE '\\')"
        params += [pattern, pattern]
        if before_id is not None:
            sql = f"SELECT id FROM messages m WHERE {where} AND m.id < ? ORDER BY m.id DESC LIMIT 1"
            params.append(before_id)
        else:
            sql = f"SELECT id FROM messages m WHERE {where} AND m.id > ? ORDER BY m.id LIMIT 1"
            params.append(after_id or 0)
        if should_stop is not None:
            self.db.set_progress_handler(lambda: 1 if should_stop() else 0, 20_000)
        try:
            found = self.db.execute(sql, params).fetchone()
        except sqlite3.OperationalError as exc:
            if should_stop is not None and should_stop():
                return None
            raise StoreError(f"reading the capture failed: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"reading the capture failed: {exc}") from None
        finally:
            if should_stop is not None:
                self.db.set_progress_handler(None, 0)
        return int(found[0]) if found else None

    # Rows for display, by primary key ----------------------------------------------------------

    def message_rows(self, ids: Sequence[int], *, json_head: int = 2000) -> list[dict[str, Any]]:
        """Messages with their call's facts; JSON cut to `json_head` characters (whole when
        `json_len` is not larger)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return rows(self.db, f"""
            SELECT m.id, m.t, m.direction, m.kind, m.rpc_id, m.method, m.call_id, m.stream_id,
                   m.exchange_id, m.sse_event_id, m.problem, m.batch_index,
                   substr(m.json, 1, ?) AS json_head, length(m.json) AS json_len,
                   c.method AS call_method, c.name AS call_name, c.rpc_id AS call_rpc_id,
                   c.direction AS call_direction, c.latency_ms, c.outcome, c.error_code,
                   c.progress_count, c.cancelled_at, c.late, c.request_message_id,
                   c.response_message_id, c.cancel_message_id
            FROM messages m LEFT JOIN calls c ON c.id = m.call_id
            WHERE m.id IN ({marks})""", [json_head, *ids])

    def exchange_rows(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return rows(self.db, f"""
            SELECT id, method, path, status, reason, started_at, response_at, ended_at, error,
                   request_content_type, response_content_type, streamed,
                   length(request_body) AS request_size, length(response_body) AS response_size
            FROM exchanges WHERE id IN ({marks})""", list(ids))

    def stream_rows(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return rows(self.db, f"SELECT * FROM streams WHERE id IN ({marks})", list(ids))

    def sse_rows(self, ids: Sequence[int], *, data_head: int = 500) -> list[dict[str, Any]]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return rows(self.db, f"""
            SELECT id, stream_id, t, kind, type, substr(data, 1, ?) AS data, event_id,
                   last_event_id, retry, start, "end"
            FROM sse_events WHERE id IN ({marks})""", [data_head, *ids])

    # Details -------------------------------------------------------------------------------

    def _one(self, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
        found = rows(self.db, sql, params)
        return found[0] if found else None

    def message(self, message_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM messages WHERE id = ?", (message_id,))

    def call(self, call_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM calls WHERE id = ?", (call_id,))

    def stream(self, stream_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM streams WHERE id = ?", (stream_id,))

    def sse_event(self, event_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM sse_events WHERE id = ?", (event_id,))

    def call_messages(self, call_id: int) -> list[dict[str, Any]]:
        """A call's request, progress, cancellation and response, in order."""
        return rows(self.db, "SELECT id, t, direction, kind, method, rpc_id, "
                    "substr(json, 1, 300) AS json_head FROM messages WHERE call_id = ? "
                    "ORDER BY id", (call_id,))

    def stream_bytes(self, stream_id: int, start: int, end: int) -> list[dict[str, Any]]:
        """The stored chunks overlapping bytes [start, end) of a stream: seq, t, offset, data.

        Chunks have no index on offset, but offsets grow with seq, so the first chunk is found
        by binary search over (stream_id, seq) lookups: O(log n) on a stream of any length.
        """
        last = self.db.execute("SELECT max(seq) FROM chunks WHERE stream_id = ?",
                               (stream_id,)).fetchone()[0]
        if last is None or end <= start:
            return []
        low, high = 0, int(last)
        while low < high:  # the last chunk whose offset <= start
            mid = (low + high + 1) // 2
            found = self.db.execute("SELECT offset FROM chunks WHERE stream_id = ? AND seq = ?",
                                    (stream_id, mid)).fetchone()
            if found is None or found[0] > start:
                high = mid - 1
            else:
                low = mid
        picked: list[dict[str, Any]] = []
        for chunk in iter_rows(self.db, "SELECT seq, t, offset, data FROM chunks "
                               "WHERE stream_id = ? AND seq >= ? ORDER BY seq", (stream_id, low)):
            if chunk["offset"] >= end:
                break
            if chunk["offset"] + len(chunk["data"]) > start:
                picked.append(chunk)
        return picked

    # Aggregates for charts and filter choices ----------------------------------------------------

    def calls_for_charts(self, session_id: int) -> list[tuple[str, str | None, float | None, str]]:
        """(method, name, latency_ms, outcome) of every call of a session."""
        return self._tuples("SELECT method, name, latency_ms, outcome FROM calls "
                            "WHERE session_id = ? ORDER BY id", [session_id])

    def chunk_times(self, session_id: int) -> list[tuple[int, float]]:
        """(stream_id, t) of every chunk of the session's streams, by stream then arrival."""
        return self._tuples("SELECT c.stream_id, c.t FROM streams s JOIN chunks c "
                            "ON c.stream_id = s.id WHERE s.session_id = ? "
                            "ORDER BY c.stream_id, c.seq", [session_id])

    def method_counts(self, session_id: int) -> list[tuple[str, int]]:
        """Methods seen in a session with how many calls or notifications used them."""
        found = self._tuples("SELECT method, count(*) FROM calls WHERE session_id = ? "
                             "GROUP BY method", [session_id])
        found += self._tuples("SELECT method, count(*) FROM messages WHERE session_id = ? AND "
                              "kind = 'notification' GROUP BY method", [session_id])
        merged: dict[str, int] = {}
        for method, count in found:
            if method is not None:
                merged[method] = merged.get(method, 0) + count
        return sorted(merged.items())

    def _tuples(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"reading the capture failed: {exc}") from None


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
