"""Capture gaps, script-style: the wire's terminator count, ingest's accounting of shed bytes
(recorded + shed = sent, at every cut), the writer's failures and the crash marking."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from recorder import gaps, wire
from recorder.ingest import Ingest
from recorder.redact import Redactor
from recorder.store import Capture, StoreWriter, recover_if_interrupted

SSE = [("Content-Type", "text/event-stream")]
LF_EVENT = b'data: {"jsonrpc":"2.0","method":"notifications/message","params":{"n":%d}}\n\n'
CRLF_EVENT = (b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
              b'"params":{"n":%d}}\r\n\r\n')


@pytest.mark.parametrize("event", [LF_EVENT, CRLF_EVENT], ids=["lf", "crlf"])
def test_terminators_are_counted_once_at_every_split(event):
    body = b"".join(event % i for i in range(5))
    for cut in range(len(body) + 1):
        first, second = body[:cut], body[cut:]
        assert wire.sse_terminators(first) + wire.sse_terminators(second, first[-2:]) == 5, cut


def test_frames_of_any_size_round_trip_whole_and_byte_by_byte():
    facts = [(wire.CHUNK, "f", 1.0, b"x" * 70_000), (wire.END, "f", 2.0, None)]
    frame = wire.encode_frame(facts) + wire.encode_frame(facts[:1])
    assert wire.LENGTH_BYTES == 8  # a 4 GiB frame fits its length
    whole = wire.FrameReader().feed(frame)
    reader = wire.FrameReader()
    split = [f for i in range(len(frame)) for f in reader.feed(frame[i:i + 1])]
    assert [wire.decode_frame(f) for f in whole] == [wire.decode_frame(f) for f in split] == [
        facts, facts[:1]]


def _stream(tmp_path: Path, facts: list[tuple]) -> Capture:
    db = tmp_path / f"c{time.monotonic_ns()}.db"
    writer = StoreWriter(db)
    ingest = Ingest(writer, Redactor(b"k" * 32))
    for fact in facts:
        ingest.feed(fact)
    ingest.close(1000.0)
    writer.close()
    return Capture(db)


def _shed(chunks: list[bytes], start: int, stop: int) -> list[tuple]:
    """Facts for a stream whose chunks [start, stop) were shed, as the proxy's sender does."""
    facts: list[tuple] = [
        ("q", "f", 1.0, "GET", "http://s:1/sse", "HTTP/1.1", [("Accept", "text/event-stream")],
         None, "c:1", 0),
        ("h", "f", 1.0, 200, "OK", SSE, True)]
    tail = b""
    shed_bytes = shed_events = 0
    for i, data in enumerate(chunks):
        if start <= i < stop:
            shed_bytes += len(data)
            shed_events += wire.sse_terminators(data, tail)
        else:
            if i == stop and stop > start:
                facts.append((wire.GAP, "f", 2.0, 2.0, shed_bytes, stop - start, shed_events,
                              gaps.OVERLOAD, None, tail))
            facts.append((wire.CHUNK, "f", 2.0 + i / 1000, data))
        tail = (tail + data)[-3:]
    if stop >= len(chunks) > start:
        facts.append((wire.GAP, "f", 2.0, 2.0, shed_bytes, stop - start, shed_events,
                      gaps.OVERLOAD, None, tail))
    facts.append(("e", "f", 9.0, None))
    return facts


@pytest.mark.parametrize("event", [LF_EVENT, CRLF_EVENT], ids=["lf", "crlf"])
def test_recorded_plus_shed_is_sent_wherever_the_gap_falls(tmp_path, event):
    body = b"".join(event % i for i in range(6))
    size = 37  # chunks that cut events, lines and line endings anywhere
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    for start in range(len(chunks)):
        for stop in (start + 1, start + 3):
            with _stream(tmp_path, _shed(chunks, start, min(stop, len(chunks)))) as capture:
                (stream,) = capture.streams(1) or capture.health_streams("opened_at")
                events = [e for e in capture.sse_events(stream["id"]) if e["kind"] == "event"]
                (gap,) = capture.gaps()
                recorded = sum(len(c["data"]) for c in capture.chunks(stream["id"]))
                assert recorded + gap["bytes"] == len(body), (start, stop)
                assert len(events) + gap["events"] == 6, (start, stop, gap)
                assert stream["bytes"] == len(body)
                # What is recorded after a gap sits at its true offset in the stream.
                for chunk in capture.chunks(stream["id"]):
                    assert body[chunk["offset"]:chunk["offset"] + len(chunk["data"])] == \
                        chunk["data"]
                for e in events:
                    assert body[e["start"]:e["end"]].startswith((b"data:", b"event:")), e


def test_a_quiet_streams_tail_is_stored_by_time(tmp_path):
    db = tmp_path / "tail.db"
    writer = StoreWriter(db)
    ingest = Ingest(writer, Redactor(b"k" * 32))
    for fact in [("q", "f", 1.0, "GET", "http://s:1/sse", "HTTP/1.1", [], None, "c:1"),
                 ("h", "f", 1.0, 200, "OK", SSE, True), ("c", "f", 1.1, LF_EVENT % 1)]:
        ingest.feed(fact)
    ingest.tick(1.1 + 0.01)
    writer.flush()
    with Capture(db) as capture:
        assert capture.chunks(1) == []  # held back a moment, for a secret split in two
    ingest.tick(1.1 + 0.2)
    writer.flush()
    with Capture(db) as capture:
        assert [c["data"] for c in capture.chunks(1)] == [LF_EVENT % 1]
    writer.close()


def _reported_locked_then_unlock(lines: list[str], other: sqlite3.Connection) -> None:
    """Wait for the writer's console line about the lock `other` holds, then release it."""
    deadline = time.monotonic() + 20
    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lines and "database is locked" in lines[0]
    other.execute("ROLLBACK")
    other.close()


def test_a_locked_database_is_retried_and_what_was_dropped_is_a_gap(tmp_path):
    db = tmp_path / "locked.db"
    lines: list[str] = []
    writer = StoreWriter(db, report=lines.append, batch_seconds=0.01)
    ingest = Ingest(writer, Redactor(b"k" * 32))
    ingest.feed(("q", "f", 1.0, "GET", "http://s:1/sse", "HTTP/1.1", [], None, "c:1"))
    ingest.feed(("h", "f", 1.0, 200, "OK", SSE, True))
    writer.flush()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # someone else holds the file
    for i in range(20):
        ingest.feed(("c", "f", 2.0 + i / 100, LF_EVENT % i))
    ingest.tick(5.0)
    _reported_locked_then_unlock(lines, other)
    ingest.feed(("c", "f", 6.0, LF_EVENT % 20))
    ingest.feed(("e", "f", 7.0, None))
    ingest.close(8.0)
    writer.close()
    assert not writer.complete and writer.gaps_written >= 1
    assert any("resumed" in line for line in lines), lines
    with Capture(db) as capture:
        (stream,) = capture.health_streams("opened_at")
        assert stream["close_reason"] == "end"  # the structural rows were retried, not lost
        found = capture.gaps()
        assert {g["reason"] for g in found} == {gaps.WRITE_FAILED}
        recorded = sum(len(c["data"]) for c in capture.chunks(stream["id"]))
        assert recorded + sum(g["bytes"] for g in found) == stream["bytes"]
        kinds = [f["kind"] for f in capture.flags()]
        assert gaps.CAPTURE_GAP in kinds
        assert capture.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_gap_whose_write_failed_is_retried_with_the_ids_it_was_given(tmp_path):
    db = tmp_path / "locked-gap.db"
    lines: list[str] = []
    writer = StoreWriter(db, report=lines.append, batch_seconds=0.01)
    writer.flush()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    writer.record_gap(gaps.CaptureGap(gaps.OVERLOAD, 1.0, 2.0, bytes=10, chunks=1, events=1))
    writer.submit()
    _reported_locked_then_unlock(lines, other)
    writer.close()
    with Capture(db) as capture:
        # Failed attempts took no new ids: the one gap and its flag are the first of each.
        assert [(g["id"], g["reason"]) for g in capture.gaps()] == [(1, gaps.OVERLOAD)]
        assert [(f["id"], f["kind"]) for f in capture.flags()] == [(1, gaps.CAPTURE_GAP)]


def test_an_unclosed_recording_is_marked_interrupted_at_the_next_opening(tmp_path):
    db = tmp_path / "crash.db"
    writer = StoreWriter(db, recording=True)
    ingest = Ingest(writer, Redactor(b"k" * 32))
    ingest.feed(("q", "f", 1.0, "GET", "http://s:1/sse", "HTTP/1.1", [], None, "c:1"))
    ingest.feed(("h", "f", 1.0, 200, "OK", SSE, True))
    ingest.feed(("c", "f", 1.5, LF_EVENT % 1))
    ingest.tick(2.0)
    writer.flush()
    # The process dies here: no close, the lock goes with it.
    done = threading.Event()
    writer._queue.put(None)
    writer._thread.join()
    writer._db.close()
    writer._release_lock()
    done.set()
    assert recover_if_interrupted(db) == 1
    assert recover_if_interrupted(db) == 0  # marked once
    with Capture(db) as capture:
        (stream,) = capture.health_streams("opened_at")
        assert (stream["close_reason"], stream["closed_at"]) == ("recorder-crash", 1.5)
        (flag,) = capture.flags()
        assert (flag["kind"], flag["severity"]) == (gaps.RECORDING_INTERRUPTED, "error")
        assert capture.meta()[gaps.STATE_KEY] == gaps.INTERRUPTED
