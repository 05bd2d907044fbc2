"""Read-only access to a capture: opening it `mode=ro` (safe beside a live recorder, WAL
mode), plain-dict rows, and `Capture`, the queries of the CLI, `check` and replay."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from recorder.store.schema import SCHEMA_VERSION, TABLES, StoreError, schema_version

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
        if not self.has(table):
            return iter(())  # a v1 capture has no capture_gaps
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
        return self._with_gaps(rows(self.db, sql, params))

    def session(self, session_id: int) -> dict[str, Any] | None:
        found = rows(self.db, self._SESSION_SUMMARY + " WHERE s.id = ?", (session_id,))
        return self._with_gaps(found)[0] if found else None

    def _with_gaps(self, sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each session row with `gaps`: how many capture gaps it has (0 on a v1 capture)."""
        counts = self.gap_counts() if sessions else {}
        for session in sessions:
            session["gaps"] = counts.get(session["id"], 0)
        return sessions

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
        if not self.has("injections"):
            return []
        return rows(self.db, "SELECT i.*, coalesce(i.session_id, x.session_id) AS session "
                    "FROM injections i LEFT JOIN exchanges x ON x.id = i.exchange_id "
                    "ORDER BY i.t, i.id")

    def counts(self) -> dict[str, int]:
        return {t: rows(self.db, f"SELECT count(*) AS n FROM {t}")[0]["n"] if self.has(t) else 0
                for t in TABLES}

    def has(self, table: str) -> bool:
        """Whether the capture has `table` (a v1 capture has no capture_gaps)."""
        return bool(self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                    (table,)).fetchone())

    def gaps(self, session_id: int | None = None) -> list[dict[str, Any]]:
        """The capture's gaps (recorder.gaps), in time order; of one session when given."""
        if not self.has("capture_gaps"):
            return []
        if session_id is None:
            return rows(self.db, "SELECT * FROM capture_gaps ORDER BY started_at, id")
        return rows(self.db, "SELECT * FROM capture_gaps WHERE session_id = ? "
                    "ORDER BY started_at, id", (session_id,))

    def gap_counts(self) -> dict[int | None, int]:
        """How many gaps each session has (None: gaps of no known session)."""
        if not self.has("capture_gaps"):
            return {}
        return dict(self._tuples_plain("SELECT session_id, count(*) FROM capture_gaps "
                                       "GROUP BY session_id"))

    def _tuples_plain(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"reading the capture failed: {exc}") from None

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
