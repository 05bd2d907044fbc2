"""Marking what a killed recorder left open in a capture (the next opening for writing does it).

A recorder sets `recording_state = recording` when it starts and something else when it
closes; a capture still saying `recording` under the writer's lock was left by a recorder that
never closed (kill -9, a crash, a power loss).
"""

from __future__ import annotations

import sqlite3

from recorder import gaps
from recorder.store.schema import set_meta_row


def recover_interrupted(db: sqlite3.Connection) -> dict[str, int]:
    """Mark what a killed recorder left open; returns {flow id: bytes stored} of the streams
    it marked (a restarted worker resumes those flows from there).

    A recorder sets `recording_state = recording` when it starts and something else when it
    closes; finding `recording` under the writer's lock means the last one never closed. Its
    open streams get `close_reason = 'recorder-crash'` (closed at their last stored chunk, with
    counters recomputed from what was stored) and a `recording-interrupted` flag each; its
    open exchanges are ended with an error saying so.
    """
    found = db.execute("SELECT value FROM meta WHERE key = ?", (gaps.STATE_KEY,)).fetchone()
    if not found or found[0] != gaps.RECORDING:
        return {}
    marked: dict[str, int] = {}
    db.execute("BEGIN")
    try:
        streams = db.execute("""
            SELECT s.id, s.session_id, s.exchange_id, s.opened_at,
                   (SELECT flow_id FROM exchanges x WHERE x.id = s.exchange_id),
                   (SELECT max(t) FROM chunks c WHERE c.stream_id = s.id),
                   (SELECT max(offset + length(data)) FROM chunks c WHERE c.stream_id = s.id),
                   (SELECT count(*) FROM chunks c WHERE c.stream_id = s.id),
                   (SELECT count(*) FROM sse_events e WHERE e.stream_id = s.id
                      AND e.kind = 'event')
            FROM streams s WHERE s.closed_at IS NULL""").fetchall()
        (flag_id,) = db.execute("SELECT coalesce(max(id), 0) FROM flags").fetchone()
        for (stream_id, session_id, exchange_id, opened_at, flow_id, last_t, size, chunks,
             events) in streams:
            if flow_id:
                marked[flow_id] = size or 0
            closed_at = last_t if last_t is not None else opened_at
            db.execute("UPDATE streams SET closed_at = ?, close_reason = 'recorder-crash', "
                       "bytes = max(bytes, ?), chunks = max(chunks, ?), events = max(events, ?) "
                       "WHERE id = ?", (closed_at, size or 0, chunks, events, stream_id))
            flag_id += 1
            db.execute("INSERT INTO flags (id, session_id, stream_id, exchange_id, t, kind, "
                       "severity, message, source) VALUES (?, ?, ?, ?, ?, ?, 'error', ?, ?)",
                       (flag_id, session_id, stream_id, exchange_id, closed_at,
                        gaps.RECORDING_INTERRUPTED,
                        "the recorder was killed while this stream was open; what it carried "
                        "after the last stored chunk is not in the capture", gaps.FLAG_SOURCE))
        db.execute("UPDATE exchanges SET ended_at = coalesce(response_at, started_at), "
                   "error = coalesce(error, 'recording interrupted (the recorder was killed)') "
                   "WHERE ended_at IS NULL")
        set_meta_row(db, gaps.STATE_KEY, gaps.INTERRUPTED)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return marked
