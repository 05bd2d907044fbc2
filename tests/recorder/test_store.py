"""The store: private files, migrations, batched writes, read-only readers during writes."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from recorder.store import SCHEMA_VERSION, Capture, StoreError, StoreWriter, migrate, open_readonly


def test_files_are_private_and_schema_is_versioned(tmp_path):
    db = tmp_path / "sub" / "c.db"
    writer = StoreWriter(db)
    writer.insert("sessions", {"id": writer.next_id("sessions"), "key": "k", "transport": "sse",
                               "server": "http://x", "started_at": 1.0})
    writer.flush()
    for p in tmp_path.rglob("c.db*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    writer.close()
    with Capture(db) as capture:
        assert capture.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert capture.sessions()[0]["key"] == "k"


def test_migrations_apply_once(tmp_path):
    db = tmp_path / "c.db"
    StoreWriter(db).close()
    conn = sqlite3.connect(db)
    assert migrate(conn) == SCHEMA_VERSION  # a second run changes nothing
    assert migrate(conn) == SCHEMA_VERSION
    conn.close()


def test_reader_sees_rows_while_writer_is_open(tmp_path):
    db = tmp_path / "c.db"
    writer = StoreWriter(db)
    for i in range(3):
        writer.insert("sessions", {"id": writer.next_id("sessions"), "key": f"k{i}",
                                   "transport": "sse", "server": "s", "started_at": float(i)})
    writer.flush()
    with Capture(db) as capture:
        assert [s["key"] for s in capture.sessions()] == ["k0", "k1", "k2"]
        assert [s["key"] for s in capture.sessions(after_id=2)] == ["k2"]
    writer.update("sessions", 1, {"client_name": "c"})
    writer.flush()
    with Capture(db) as capture:
        assert capture.session(1)["client_name"] == "c"
        with pytest.raises(sqlite3.OperationalError):
            capture.db.execute("DELETE FROM sessions")  # readers are read-only
    writer.close()


def test_ids_continue_after_reopen_and_one_writer_at_a_time(tmp_path):
    db = tmp_path / "c.db"
    writer = StoreWriter(db)
    assert writer.next_id("messages") == 1
    writer.insert("sessions", {"id": writer.next_id("sessions"), "key": "k", "transport": "sse",
                               "server": "s", "started_at": 0.0})
    with pytest.raises(StoreError, match="another ssetap recorder"):
        StoreWriter(db)
    writer.close()
    again = StoreWriter(db)
    assert again.next_id("sessions") == 2
    again.close()


def test_a_bad_write_is_reported_not_swallowed(tmp_path):
    writer = StoreWriter(tmp_path / "c.db")
    writer.insert("sessions", {"id": 1, "nonexistent_column": 1})
    with pytest.raises(StoreError):
        writer.flush()
    with pytest.raises(StoreError):
        writer.close()


def test_foreign_files_are_refused(tmp_path):
    other = tmp_path / "o.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE x (y)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an ssetap capture"):
        open_readonly(other)
    with pytest.raises(StoreError, match="not an ssetap capture"):
        StoreWriter(other)
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "target.db")
    with pytest.raises(StoreError, match="symbolic link"):
        StoreWriter(link)


def test_events_of_one_batch_are_stored_as_their_rows(tmp_path):
    """The writer's hot path (events gathered per type, bound as plain tuples) stores what the
    events say: an update after an insert of the same batch finds its row, an offline tool's
    row of a hot table goes in beside the events, a message's payload is not a column."""
    from recorder.events import ChunkStored, MessageSeen, SseSeen, StreamCounters, StreamOpened

    db = tmp_path / "c.db"
    writer = StoreWriter(db)
    writer.write(StreamOpened(1, 1, None, "GET", "get", None, 1.0, None))
    chunks = [ChunkStored(i, 1, i - 1, 1.0 + i, 10 * (i - 1), b"x" * 10) for i in (1, 2)]
    sse = SseSeen(1, 1, 1, 1.5, "event", "message", "{}", "e1", None, 3000, 0, 20)
    message = MessageSeen(1, 1, 1, 1, 1, 1.5, "s2c", "notification", None, "m", None, "{}",
                          None, None, payload={"not": "stored"})
    for event in (*chunks, sse, message):
        writer.write(event)
    writer.insert("chunks", {"id": 3, "stream_id": 1, "seq": 2, "t": 4.0, "offset": 20,
                             "data": b"y"})
    writer.write(StreamCounters(2.0, 1, 21, 3, 1, 0, 1.5, False, 3000, 1.1))
    writer.write(chunks[0]._replace(id=4, seq=3, offset=21))  # after the update: still stored
    writer.close()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, stream_id, seq, t, offset, data FROM chunks ORDER BY id")
    assert rows.fetchall() == [tuple(c) for c in chunks] + [
        (3, 1, 2, 4.0, 20, b"y"), (4, 1, 3, 2.0, 21, b"x" * 10)]
    assert conn.execute("SELECT * FROM sse_events").fetchall() == [tuple(sse)]
    assert conn.execute("SELECT * FROM messages").fetchall() == [tuple(message)[:-1]]
    assert conn.execute("SELECT method, bytes, chunks, events, retry_ms, first_byte_at "
                        "FROM streams").fetchall() == [("GET", 21, 3, 1, 3000, 1.1)]
    conn.close()
