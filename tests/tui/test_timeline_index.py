"""The timeline's row order: the block merge, stream closes, gaps, sparse filters, lookups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recorder.store import BrowseReader
from tui.filters import TimelineFilter
from tui.timeline_index import (
    EXCHANGE,
    GAP,
    MESSAGE,
    SSE,
    STREAM_CLOSE,
    STREAM_OPEN,
    WATERMARK,
    IndexChunk,
    TimelineBuilder,
    TimelineIndex,
    _merge,
)


def build(path: Path, session_id: int = 1, timeline_filter: TimelineFilter | None = None,
          gap: float | None = 2.0) -> TimelineIndex:
    index = TimelineIndex()
    with BrowseReader(path) as reader:
        for chunk in TimelineBuilder(session_id, timeline_filter or TimelineFilter(),
                                     gap).scan(reader):
            index.extend(chunk)
    return index


def rows(index: TimelineIndex) -> list[tuple[float, int, int]]:
    return [(index.times[i], index.sources[i], index.ids[i]) for i in range(len(index))]


def test_merge_yields_every_key_in_time_order_across_sources() -> None:
    a = iter([[(1.0, 0, 1), (3.0, 0, 2)], [(5.0, 0, 3)]])
    b = iter([[(2.0, 3, 10)], [(2.5, 3, 11), (6.0, 3, 12)]])
    c = iter([[(0.5, 2, 7), (4.0, WATERMARK, 99)], [(7.0, 2, 8)]])
    merged = [key for block in _merge([a, b, c]) for key in block]
    assert merged == sorted(merged)
    assert len(merged) == 9


def test_story_timeline_has_every_row_once_in_time_order(story: tuple[Path, dict[str, Any]]
                                                         ) -> None:
    path, _ = story
    index = build(path)
    found = rows(index)
    assert [t for t, _, _ in found] == sorted(t for t, _, _ in found)
    with BrowseReader(path) as reader:
        expected = {(EXCHANGE, i) for i, _ in reader.exchange_keys(1, limit=None)}
        for i, _, closed in reader.stream_keys(1, limit=None):
            expected |= {(STREAM_OPEN, i), (STREAM_CLOSE, i)} if closed else {(STREAM_OPEN, i)}
        expected |= {(SSE, i) for i, _ in reader.sse_keys(1, limit=None)}
        expected |= {(MESSAGE, i) for i, _ in reader.message_keys(1, limit=None)}
    assert {(s, i) for _, s, i in found if s != GAP} == expected
    assert len([1 for _, s, _ in found if s != GAP]) == len(expected)


def test_a_long_silence_becomes_one_gap_row(story: tuple[Path, dict[str, Any]]) -> None:
    index = build(story[0])
    gaps = [(t, i) for t, s, i in rows(index) if s == GAP]
    assert len(gaps) == 1
    assert gaps[0][1] == 12_000  # milliseconds, from the heartbeat at +0.6 s to +12.6 s
    assert build(story[0], gap=None).next_of_source(GAP, 0, 1) is None


def test_gap_rows_only_when_unfiltered(story: tuple[Path, dict[str, Any]]) -> None:
    filtered = build(story[0], timeline_filter=TimelineFilter(directions=frozenset({"c2s"})))
    assert GAP not in set(filtered.sources)


def test_stream_closes_sort_by_close_time_and_are_found_by_id(
        story: tuple[Path, dict[str, Any]]) -> None:
    path, ids = story
    index = build(path)
    get_close = index.position_of(STREAM_CLOSE, ids["get_stream"])
    assert get_close == len(index) - 1  # the GET stream outlives every POST stream
    assert index.position_of(STREAM_OPEN, ids["get_stream"]) < get_close


def test_sparse_filter_is_read_in_bounded_windows(story: tuple[Path, dict[str, Any]]) -> None:
    index = build(story[0], timeline_filter=TimelineFilter(flagged_only=True))
    keys = {index.key(i) for i in range(len(index))}
    _, ids = story
    assert (MESSAGE, ids["error_message"]) in keys
    assert (STREAM_OPEN, ids["get_stream"]) in keys
    assert all(source in (MESSAGE, STREAM_OPEN, STREAM_CLOSE, EXCHANGE) for source, _ in keys)


def test_method_filter_keeps_results_progress_and_cancels_of_that_method(
        story: tuple[Path, dict[str, Any]]) -> None:
    index = build(story[0], timeline_filter=TimelineFilter(methods=frozenset({"tools/call"})))
    with BrowseReader(story[0]) as reader:
        kinds = [row["kind"] for row in reader.message_rows([index.ids[i]
                                                             for i in range(len(index))])]
    assert set(index.sources) == {MESSAGE}
    assert kinds.count("request") == 3 and kinds.count("result") == 2
    assert kinds.count("notification") == 3  # two progress notifications and the cancel


def test_increment_continues_where_the_scan_ended(tmp_path: Path) -> None:
    from recorder.store import StoreWriter

    path = tmp_path / "live.db"
    writer = StoreWriter(path)
    sid = writer.next_id("sessions")
    writer.insert("sessions", {"id": sid, "key": "k", "transport": "sse", "server": "s",
                               "started_at": 100.0})

    def message(t: float) -> None:
        writer.insert("messages", {"id": writer.next_id("messages"), "session_id": sid, "t": t,
                                   "direction": "c2s", "kind": "notification", "method": "m",
                                   "json": "{}"})

    message(100.0)
    writer.flush()
    builder = TimelineBuilder(sid, TimelineFilter(), 5.0)
    index = TimelineIndex()
    with BrowseReader(path) as reader:
        for chunk in builder.scan(reader):
            index.extend(chunk)
        assert builder.increment(reader) is None
        message(101.0)
        message(110.0)
        writer.flush()
        chunk = builder.increment(reader)
        assert isinstance(chunk, IndexChunk)
        index.extend(chunk)
    writer.close()
    assert [index.sources[i] for i in range(len(index))] == [MESSAGE, MESSAGE, GAP, MESSAGE]
    assert index.ids[2] == 9000


def test_lookups(story: tuple[Path, dict[str, Any]]) -> None:
    path, ids = story
    index = build(path)
    request = index.position_of(MESSAGE, ids["countdown_request"])
    assert request is not None and index.key(request) == (MESSAGE, ids["countdown_request"])
    assert index.position_of(MESSAGE, 10**9) is None
    assert index.message_near(request, -1) == ids["countdown_request"]
    gap = index.next_of_source(GAP, 0, 1)
    assert gap is not None and index.next_of_source(GAP, gap, -1) is None
    assert index.position_at_time(index.times[gap] + 0.5) == gap + 1


def test_a_capture_gap_is_a_row_of_its_own_whatever_the_filter(tmp_path: Path) -> None:
    from recorder import gaps, wire
    from recorder.ingest import Ingest
    from recorder.redact import Redactor
    from recorder.store import StoreWriter
    from tui.detail_data import load_detail
    from tui.rows import load_entries
    from tui.timeline_index import CAPTURE_GAP

    db = tmp_path / "gap.db"
    writer = StoreWriter(db)
    ingest = Ingest(writer, Redactor(b"k" * 32))
    event = b'data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n'
    for fact in [
        ("q", "f", 1.0, "GET", "http://s:1/sse", "HTTP/1.1",
         [("Mcp-Session-Id", "a" * 32), ("Accept", "text/event-stream")], None, "c:1"),
        ("h", "f", 1.0, 200, "OK", [("Content-Type", "text/event-stream")], True),
        ("c", "f", 1.1, event),
        (wire.GAP, "f", 1.2, 3.0, len(event) * 50, 50, 50, gaps.OVERLOAD, None, b"\n\n"),
        ("c", "f", 3.1, event),
        ("e", "f", 4.0, None),
    ]:
        ingest.feed(fact)
    ingest.close(5.0)
    writer.close()
    for timeline_filter in (TimelineFilter(), TimelineFilter(flagged_only=True)):
        index = build(db, timeline_filter=timeline_filter)
        found = [(t, i) for t, s, i in rows(index) if s == CAPTURE_GAP]
        assert found == [(1.2, 1)], rows(index)
    with BrowseReader(db) as reader:
        (entry,) = load_entries(reader, [(CAPTURE_GAP, 1)])
        assert entry.badge == "LOST" and "overload" in entry.text and "50 SSE events" in entry.text
        detail = load_detail(reader, (CAPTURE_GAP, 1), 1.0)
        assert "overload" in detail.title
