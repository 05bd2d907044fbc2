"""Whole-table reads and writes of a capture for archives: what export and import need.

Kept beside `recorder.store` (whose `Capture` and `StoreWriter` it uses) so that all SQL stays in
store modules: the exporters and importers see dicts of one row at a time, streamed, never a
whole table in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from recorder.store import TABLES, Capture, StoreError, iter_rows

# How a table's rows are picked for one session (the rows of other sessions are left out);
# every other table (flags, injections, capture gaps...) names its session in `session_id`.
_SESSION_FILTER = {
    "sessions": "id = ?",
    "chunks": "stream_id IN (SELECT id FROM streams WHERE session_id = ?)",
}


def _session_filter(table: str) -> str:
    return _SESSION_FILTER.get(table, "session_id = ?")


def has_table(capture: Capture, table: str) -> bool:
    """Whether the capture has `table` (older schemas lack the newer tables)."""
    found = iter_rows(capture.db, "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND "
                      "name = ?", (table,))
    return next(found, None) is not None


def table_rows(capture: Capture, table: str, session_id: int | None = None,
               ) -> Iterator[dict[str, Any]]:
    """Every row of `table` in id order (only one session's with `session_id`)."""
    if table not in TABLES:
        raise StoreError(f"no table {table!r}")
    if not has_table(capture, table):
        return
    sql = f"SELECT * FROM {table}"
    params: list[Any] = []
    if session_id is not None:
        sql += f" WHERE {_session_filter(table)}"
        params.append(session_id)
    try:
        yield from iter_rows(capture.db, sql + " ORDER BY id", params)
    except Exception as exc:  # sqlite3 errors, without importing sqlite3 here
        raise StoreError(f"reading the capture failed: {exc}") from None


def table_count(capture: Capture, table: str, session_id: int | None = None) -> int:
    """How many rows `table_rows` yields (for progress)."""
    if not has_table(capture, table):
        return 0
    sql = f"SELECT count(*) AS n FROM {table}"
    params: list[Any] = []
    if session_id is not None:
        sql += f" WHERE {_session_filter(table)}"
        params.append(session_id)
    return int(next(iter_rows(capture.db, sql, params))["n"])


def meta_rows(capture: Capture) -> list[tuple[str, str]]:
    """The meta table as (key, value) pairs, in key order."""
    return sorted(capture.meta().items())


def exchange_streams(capture: Capture, exchange_id: int) -> list[dict[str, Any]]:
    return list(iter_rows(capture.db, "SELECT * FROM streams WHERE exchange_id = ? ORDER BY id",
                          (exchange_id,)))


def messages_by_exchange(capture: Capture, session_id: int | None = None
                         ) -> Iterator[dict[str, Any]]:
    """Every message's links, ordered by (exchange_id, id): one pass that an exporter walks
    beside the exchanges (messages have no index on exchange_id, so a query per exchange would
    scan the table once per exchange)."""
    sql = ("SELECT id, exchange_id, t, direction, kind, rpc_id, method, sse_event_id, call_id "
           "FROM messages")
    params: list[Any] = []
    if session_id is not None:
        sql += " WHERE session_id = ?"
        params.append(session_id)
    yield from iter_rows(capture.db, sql + " ORDER BY exchange_id, id", params)


def messages_by_id(capture: Capture, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Messages by id (calls' requests and responses), 500 ids a query (SQLite's bound on
    variables)."""
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        marks = ",".join("?" * len(part))
        out.update((r["id"], r) for r in iter_rows(
            capture.db, f"SELECT * FROM messages WHERE id IN ({marks})", part))
    return out


def session_calls(capture: Capture, session_id: int) -> Iterator[dict[str, Any]]:
    """A session's calls in id order, streamed (a session may hold millions)."""
    yield from iter_rows(capture.db, "SELECT * FROM calls WHERE session_id = ? ORDER BY id",
                         (session_id,))


def stream_items(capture: Capture, stream_id: int, kinds: tuple[str, ...], *,
                 limit: int = 1000) -> list[dict[str, Any]]:
    """A stream's first `limit` SSE items of some kinds (comments, events), data cut to 200."""
    marks = ",".join("?" * len(kinds))
    return list(iter_rows(capture.db, f"SELECT id, t, kind, type, substr(data, 1, 200) AS data, "
                          f"event_id FROM sse_events WHERE stream_id = ? AND kind IN ({marks}) "
                          "ORDER BY id LIMIT ?", (stream_id, *kinds, limit)))


def capture_gaps(capture: Capture, session_id: int) -> list[dict[str, Any]]:
    """What the recording could not keep, of one session, in time order ([] before schema v2)."""
    if not has_table(capture, "capture_gaps"):
        return []
    return list(iter_rows(capture.db, "SELECT * FROM capture_gaps WHERE session_id = ? "
                          "ORDER BY started_at, id", (session_id,)))


def stream_chunks(capture: Capture, stream_id: int) -> Iterator[dict[str, Any]]:
    """A stream's raw chunks in offset order, streamed."""
    yield from iter_rows(capture.db, "SELECT * FROM chunks WHERE stream_id = ? "
                         "ORDER BY offset, id", (stream_id,))


def stream_sse_events(capture: Capture, stream_id: int) -> Iterator[dict[str, Any]]:
    """A stream's SSE items in arrival order, streamed."""
    yield from iter_rows(capture.db, "SELECT * FROM sse_events WHERE stream_id = ? ORDER BY id",
                         (stream_id,))
