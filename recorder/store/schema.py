"""The capture's schema: tables, versioned migrations, the private file, the meta rows.

- The schema is versioned in `meta`; migrations are registered functions applied in order,
  each in its own transaction.
- The file is created private (0600) before SQLite touches it: SQLite would create it 0644 and
  give the -wal/-shm sidecars the same mode.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

FORMAT_NAME = "ssetap-capture"
SCHEMA_VERSION = 3


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

# v2: what a recording could not keep (recorder.gaps), and the size of every body as sent.
_SCHEMA_V2 = """
CREATE TABLE capture_gaps (
    id INTEGER PRIMARY KEY,
    session_id INTEGER REFERENCES sessions(id),
    exchange_id INTEGER REFERENCES exchanges(id),
    stream_id INTEGER REFERENCES streams(id),
    start_offset INTEGER,
    end_offset INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    events INTEGER,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    reason TEXT NOT NULL,
    details TEXT
);
CREATE INDEX capture_gaps_session ON capture_gaps(session_id, id);
CREATE INDEX capture_gaps_stream ON capture_gaps(stream_id);
ALTER TABLE exchanges ADD COLUMN request_size INTEGER;
ALTER TABLE exchanges ADD COLUMN response_size INTEGER;
"""

TABLES = ("sessions", "exchanges", "streams", "chunks", "sse_events", "messages", "calls", "flags",
          "capture_gaps", "injections")


def _migrate_to_1(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA_V1)
    db.execute("INSERT INTO meta(key, value) VALUES ('format', ?)", (FORMAT_NAME,))
    db.execute("INSERT INTO meta(key, value) VALUES ('created_at', ?)", (repr(time.time()),))


def _migrate_to_2(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V2.split(";"):
        if statement.strip():
            db.execute(statement)


_SCHEMA_V3 = """
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
"""


def _migrate_to_3(db: sqlite3.Connection) -> None:
    """What `--fault` changed on purpose (one row per change; see recorder.faults)."""
    for statement in _SCHEMA_V3.split(";"):
        if statement.strip():
            db.execute(statement)


# Registered migrations: index i brings the schema from version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1, _migrate_to_2,
                                                          _migrate_to_3]


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
        if version == 0:
            MIGRATIONS[0](db)  # executescript: it manages its own transaction
        else:
            db.execute("BEGIN")
        try:
            if version:
                MIGRATIONS[version](db)
            version += 1
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(version),),
            )
            if db.in_transaction:
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
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



def set_meta_row(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
               "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))
