"""The TUI's reads: keyset pages of timeline keys, rows by id, details, chart aggregates."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from recorder.store.readers import Capture, iter_rows, rows
from recorder.store.schema import StoreError

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

    def capture_gap_keys(self, session_id: int, *, after_id: int = 0,
                         limit: int | None = 10_000) -> list[tuple[int, float]]:
        """(id, started_at) of the session's capture gaps (none in a v1 capture)."""
        if not self.has("capture_gaps"):
            return []
        return self._keys("SELECT id, started_at FROM capture_gaps WHERE session_id = ?",
                          [session_id], "id", after_id, limit, None)

    def capture_gap_rows(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids or not self.has("capture_gaps"):
            return []
        marks = ",".join("?" * len(ids))
        return rows(self.db, f"SELECT * FROM capture_gaps WHERE id IN ({marks})", list(ids))

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
