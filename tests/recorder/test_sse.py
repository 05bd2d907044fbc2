"""Tests for recorder.sse: spec vectors fed whole, split, byte by byte; properties."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.model import (
    SseComment,
    SseControl,
    SseEvent,
    SseIncomplete,
    SseItem,
    SseOversize,
)
from recorder.sse import SseError, SseParser

BOM = b"\xef\xbb\xbf"
DEFAULT_MAX = 64 * 1024 * 1024


def event(
    data: str,
    start: int,
    end: int,
    *,
    type: str = "message",
    last_event_id: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> SseEvent:
    return SseEvent(type, data, last_event_id, id, retry, start, end)


def control(
    start: int,
    end: int,
    *,
    last_event_id: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> SseControl:
    return SseControl(last_event_id, id, retry, start, end)


def parse(chunks: list[bytes], max_line_bytes: int = DEFAULT_MAX) -> list[SseItem]:
    """Feed the non-empty chunks (b"" would end the stream), then end it; all items."""
    parser = SseParser(max_line_bytes)
    items: list[SseItem] = []
    for chunk in chunks:
        if chunk:
            items += parser.feed(chunk)
    items += parser.feed(b"")
    return items


def split_at(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(points), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class Vector:
    name: str
    stream: bytes
    expected: list[SseItem]
    max_line_bytes: int = DEFAULT_MAX


PING = b": ping - 2025-06-01 12:34:56.789012+00:00\r\n\r\n"
ENDPOINT = (
    b"event: endpoint\r\n"
    b"data: /messages/?session_id=0123456789abcdef0123456789abcdef\r\n"
    b"\r\n"
)
LONG = b"data: " + b"x" * 100  # a 106-byte line, oversize when the bound is 16

VECTORS = [
    # --- WHATWG examples --------------------------------------------------------------
    Vector(
        "whatwg multi-line data",
        b"data: YHOO\ndata: +2\ndata: 10\n\n",
        [event("YHOO\n+2\n10", 0, 30)],
    ),
    Vector(
        "whatwg comment, id, id reset, space kept",
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n\n",
        [
            SseComment("test stream", 0, 14),
            event("first event", 15, 40, last_event_id="1", id="1"),
            event("second event", 40, 62, last_event_id="", id=""),
            event(" third event", 62, 82, last_event_id=""),
        ],
    ),
    Vector(
        "whatwg data without colon, last block discarded",
        b"data\n\ndata\ndata\n\ndata:",
        [event("", 0, 6), event("\n", 6, 17), SseIncomplete(17, 22)],
    ),
    Vector(
        "whatwg data:test equals data: test",
        b"data:test\n\ndata: test\n\n",
        [event("test", 0, 11), event("test", 11, 23)],
    ),
    Vector(
        "one leading space stripped, the second kept",
        b"data:x\n\ndata: x\n\ndata:  x\n\n",
        [event("x", 0, 8), event("x", 8, 17), event(" x", 17, 27)],
    ),
    # --- comments ---------------------------------------------------------------------
    Vector(
        "comments",
        b":\n:no space\n:  two\n: \n\n",
        [
            SseComment("", 0, 2),
            SseComment("no space", 2, 12),
            SseComment(" two", 12, 19),
            SseComment("", 19, 22),
        ],
    ),
    Vector(
        "comment inside a block",
        b"data: a\n: beat\ndata: b\n\n",
        [SseComment("beat", 8, 15), event("a\nb", 0, 24)],
    ),
    # --- id ---------------------------------------------------------------------------
    Vector(
        "id persists, empty id resets",
        b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\ndata: d\n\n",
        [
            event("a", 0, 15, last_event_id="7", id="7"),
            event("b", 15, 24, last_event_id="7"),
            event("c", 24, 36, last_event_id="", id=""),
            event("d", 36, 45, last_event_id=""),
        ],
    ),
    Vector(
        "id containing NUL is ignored",
        b"id: 1\n\ndata: a\nid: 2\x003\n\n",
        [
            control(0, 7, last_event_id="1", id="1"),
            event("a", 7, 24, last_event_id="1"),
        ],
    ),
    Vector(
        "last id in a block wins, id after data counts",
        b"id: 1\ndata: a\nid: 2\n\n",
        [event("a", 0, 21, last_event_id="2", id="2")],
    ),
    # --- retry ------------------------------------------------------------------------
    Vector(
        "retry digits only",
        b"retry: 3000\ndata: a\n\n"
        b"retry: 12a\ndata: b\n\n"
        b"retry:\ndata: c\n\n"
        b"retry: -1\n\n"
        b"retry:  5\n\n"
        b"retry: \xef\xbc\x95\n\n"  # FULLWIDTH DIGIT FIVE is not an ASCII digit
        b"retry:007\n\n",
        [
            event("a", 0, 21, retry=3000),
            event("b", 21, 41, retry=None),
            event("c", 41, 57),
            control(91, 102, retry=7),
        ],
    ),
    # --- event type and unknown fields ------------------------------------------------
    Vector(
        "event type, empty type is message",
        b"event: add\ndata: 1\n\nevent:\ndata: 2\n\n",
        [event("1", 0, 20, type="add"), event("2", 20, 36)],
    ),
    Vector(
        "unknown and wrong-case fields are ignored",
        b"Data: x\nEVENT: y\nfoo: bar\nID: 3\n\ndata: ok\nevent: custom\nfoo\n\n",
        [event("ok", 33, 61, type="custom")],
    ),
    Vector(
        "event type without data fires nothing",
        b"event: lonely\n\ndata: a\n\n",
        [event("a", 15, 24)],
    ),
    # --- BOM --------------------------------------------------------------------------
    Vector("BOM stripped at start", BOM + b"data: a\n\n", [event("a", 0, 9)]),
    Vector(
        "second BOM is not stripped",
        BOM + BOM + b"data: a\n\ndata: b\n\n",
        [event("b", 12, 21)],
    ),
    Vector(
        "BOM later in the stream is not stripped",
        b"data: a\n\n" + BOM + b"data: b\n\n",
        [event("a", 0, 9)],
    ),
    Vector("lone BOM prefix at EOF", b"\xef\xbb", [SseIncomplete(0, 2)]),
    Vector("only a BOM", BOM, []),
    Vector(
        "almost a BOM",
        b"\xef\xbb\n\ndata: a\n\n",
        [event("a", 4, 13)],
    ),
    # --- line endings -----------------------------------------------------------------
    Vector("CR", b"data: a\rdata: b\r\r", [event("a\nb", 0, 17)]),
    Vector("CRLF", b"data: a\r\n\r\n", [event("a", 0, 11)]),
    Vector(
        "mixed endings",
        b"data: a\r\ndata: b\rdata: c\n\r\n",
        [event("a\nb\nc", 0, 27)],
    ),
    Vector(
        "LF then CR is two line endings",
        b"data: a\n\rdata: b\n\n",
        [event("a", 0, 9), event("b", 9, 18)],
    ),
    Vector("CR then CRLF", b"data: a\r\r\n", [event("a", 0, 10)]),
    Vector(
        "CR at EOF ends a line",
        b"data: a\n\r",
        [event("a", 0, 9)],
    ),
    # --- end of stream ----------------------------------------------------------------
    Vector(
        "trailing event without blank line",
        b"data: a\n\ndata: b\n",
        [event("a", 0, 9), SseIncomplete(9, 17)],
    ),
    Vector(
        "trailing partial line",
        b"data: a\n\ndata: b",
        [event("a", 0, 9), SseIncomplete(9, 16)],
    ),
    Vector(
        "trailing field line ended by CR at EOF",
        b"data: a\n\ndata: b\r",
        [event("a", 0, 9), SseIncomplete(9, 17)],
    ),
    Vector(
        "unfinished block with a comment after it",
        b"id: 5\ndata: b\n: hb\n",
        [SseComment("hb", 14, 19), SseIncomplete(0, 19)],
    ),
    Vector(
        "trailing complete comment is not incomplete",
        b"data: a\n\n: bye\n",
        [event("a", 0, 9), SseComment("bye", 9, 15)],
    ),
    Vector(
        "trailing partial comment",
        b": bye",
        [SseIncomplete(0, 5)],
    ),
    Vector("empty stream", b"", []),
    Vector("blank lines only", b"\n\r\n\r", []),
    # --- blocks without data ----------------------------------------------------------
    Vector(
        "id-only block",
        b"id: 42\n\n",
        [control(0, 8, last_event_id="42", id="42")],
    ),
    Vector("retry-only block", b"retry: 10\n\n", [control(0, 11, retry=10)]),
    # --- MCP wire samples -------------------------------------------------------------
    Vector(
        "MCP priming event",
        b"id: 1\r\ndata: \r\nretry: 3000\r\n\r\n",
        [event("", 0, 30, last_event_id="1", id="1", retry=3000)],
    ),
    Vector(
        "sse-starlette heartbeat",
        PING,
        [SseComment("ping - 2025-06-01 12:34:56.789012+00:00", 0, 43)],
    ),
    Vector("TS SDK keepalive", b": keepalive\n\n", [SseComment("keepalive", 0, 12)]),
    Vector(
        "Python SDK endpoint event",
        ENDPOINT,
        [
            event(
                "/messages/?session_id=0123456789abcdef0123456789abcdef",
                0,
                81,
                type="endpoint",
            )
        ],
    ),
    Vector(
        "JSON-RPC message event between heartbeats",
        PING
        + b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\r\n\r\n'
        + PING,
        [
            SseComment("ping - 2025-06-01 12:34:56.789012+00:00", 0, 43),
            event('{"jsonrpc":"2.0","id":1,"result":{}}', 45, 107),
            SseComment("ping - 2025-06-01 12:34:56.789012+00:00", 107, 150),
        ],
    ),
    # --- UTF-8 ------------------------------------------------------------------------
    Vector(
        "multi-byte UTF-8 everywhere",
        "event: ärger\nid: ñ€\ndata: héllo €😀\n: ♥\n\n".encode(),
        [
            SseComment("♥", 45, 51),
            event("héllo €😀", 0, 52, type="ärger", last_event_id="ñ€", id="ñ€"),
        ],
    ),
    Vector(
        "invalid UTF-8 is replaced",
        b"data: \xff\xfe\ndata: \xe2\x82\n\n",
        [event("\ufffd\ufffd\n\ufffd", 0, 19)],
    ),
    # --- bounded lines ----------------------------------------------------------------
    Vector(
        "oversize line then a normal event",
        LONG + b"\n\ndata: ok\n\n",
        [SseOversize(0, 107), event("ok", 108, 118)],
        max_line_bytes=16,
    ),
    Vector(
        "oversize line inside a block",
        b"data: a\r\n" + LONG + b"\r\ndata: b\r\n\r\n",
        [SseOversize(9, 117), event("a\nb", 0, 128)],
        max_line_bytes=16,
    ),
    Vector(
        "oversize comment",
        b": " + b"c" * 20 + b"\n: ok\n",
        [SseOversize(0, 23), SseComment("ok", 23, 28)],
        max_line_bytes=16,
    ),
    Vector(
        "oversize line at EOF",
        b"data: a\n" + LONG,
        [SseOversize(8, 114), SseIncomplete(0, 114)],
        max_line_bytes=16,
    ),
    Vector(
        "line exactly at the bound is kept",
        b"data: 0123456789\r\n\r\n",
        [event("0123456789", 0, 20)],
        max_line_bytes=16,
    ),
    Vector(
        "line one byte over the bound",
        b"data: 01234567890\r\n\r\n",
        [SseOversize(0, 19)],
        max_line_bytes=16,
    ),
]


def body_of(stream: bytes) -> bytes:
    """The stream as offsets count it: without one leading BOM."""
    return stream.removeprefix(BOM)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_vector_whole(vector: Vector) -> None:
    assert parse([vector.stream], vector.max_line_bytes) == vector.expected


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_vector_every_split_point(vector: Vector) -> None:
    for point in range(len(vector.stream) + 1):
        chunks = split_at(vector.stream, [point])
        assert parse(chunks, vector.max_line_bytes) == vector.expected, point


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_vector_byte_by_byte(vector: Vector) -> None:
    stream = vector.stream
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert parse(chunks, vector.max_line_bytes) == vector.expected


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_vector_offsets(vector: Vector) -> None:
    check_offsets(body_of(vector.stream), vector.expected, vector.max_line_bytes)


def reparse(block: bytes, max_line_bytes: int = DEFAULT_MAX) -> list[SseItem]:
    """Parse `block` on its own, behind a blank line so that a BOM is not stripped."""
    items = parse([b"\n" + block], max_line_bytes)
    return [moved(item, start=item.start - 1, end=item.end - 1) for item in items]


def moved(item: SseItem, *, start: int, end: int) -> SseItem:
    """The item at other offsets (SseEvent is a NamedTuple, the rarer items dataclasses)."""
    if isinstance(item, SseEvent):
        return item._replace(start=start, end=end)
    return replace(item, start=start, end=end)


def check_offsets(body: bytes, items: list[SseItem], max_line_bytes: int) -> None:
    """Each item's [start:end) slice of the body holds exactly what the item reports."""
    previous_end = 0
    for item in items:
        assert 0 <= item.start < item.end <= len(body)
        raw = body[item.start : item.end]
        if isinstance(item, SseComment):
            assert raw.startswith(b":")
            assert raw.endswith((b"\r", b"\n"))
            alone_comment = replace(item, start=0, end=len(raw))
            assert reparse(raw, max_line_bytes) == [alone_comment]
        elif isinstance(item, SseEvent | SseControl):
            # The block alone dispatches exactly once, at its very end.
            again = [
                i
                for i in reparse(raw, max_line_bytes)
                if isinstance(i, SseEvent | SseControl)
            ]
            assert len(again) == 1
            (alone,) = again
            assert type(alone) is type(item)
            assert (alone.start, alone.end) == (0, len(raw))
            assert (alone.id, alone.retry) == (item.id, item.retry)
            if isinstance(item, SseEvent):
                assert isinstance(alone, SseEvent)
                assert (alone.type, alone.data) == (item.type, item.data)
        elif isinstance(item, SseIncomplete):
            assert item.end == len(body)
            tail = reparse(raw, max_line_bytes)
            assert tail[-1] == SseIncomplete(0, len(raw))
            assert all(isinstance(i, SseComment | SseOversize) for i in tail[:-1])
        else:
            lines = raw.splitlines()
            assert len(lines) == 1
            assert len(lines[0]) > max_line_bytes
        # Items come out in stream order of their ends (an event after its comments).
        assert item.end >= previous_end or isinstance(item, SseIncomplete)
        previous_end = max(previous_end, item.end)


# --- the parser's state and API -------------------------------------------------------


def test_cursor_retry_and_offset() -> None:
    parser = SseParser()
    assert (parser.last_event_id, parser.retry, parser.offset) == (None, None, 0)
    assert parser.feed(b"\xef\xbb") == []
    assert parser.offset == 0  # maybe a BOM: held
    assert parser.feed(b"\xbfid: 3\nretry: 50\n") == []
    assert parser.offset == 16
    assert parser.retry == 50  # retry applies at once
    assert parser.last_event_id is None  # the id is committed at dispatch
    assert parser.feed(b"\n") == [control(0, 17, last_event_id="3", id="3", retry=50)]
    assert parser.last_event_id == "3"
    assert parser.feed(b"id\ndata: x\r") == []
    assert parser.offset == 28
    assert parser.feed(b"\n\r\n") == [event("x", 17, 31, last_event_id="", id="")]
    assert parser.last_event_id == ""
    assert parser.feed(b"") == []


def test_not_a_bom_is_data() -> None:
    parser = SseParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"data: a\n\n") == []  # the line's name is b"\xefdata"
    assert parser.offset == 10
    assert parser.feed(b"") == []


def test_feed_after_end_raises() -> None:
    parser = SseParser()
    parser.feed(b"data: a\n\n")
    parser.feed(b"")
    with pytest.raises(SseError):
        parser.feed(b"data: b\n\n")
    with pytest.raises(SseError):
        parser.feed(b"")


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SseParser(0)


def test_huge_retry_is_ignored_not_raised() -> None:
    digits = b"9" * 10_000  # beyond int()'s default digit limit
    assert parse([b"retry: " + digits + b"\n\ndata: a\n\n"]) == [
        event("a", 10009, 10018)
    ]


def test_oversize_line_is_not_buffered() -> None:
    parser = SseParser(max_line_bytes=1024)
    assert parser.feed(b"data: a\n") == []
    for _ in range(1000):
        assert parser.feed(b"data: " + b"y" * 4096) == []
        assert len(parser._pending) <= 1024 + 4102
    assert parser.feed(b"\r") == []
    items = parser.feed(b"\ndata: b\n\n")
    end = 8 + 1000 * 4102 + 2
    assert items == [SseOversize(8, end), event("a\nb", 0, end + 9)]
    assert parser.feed(b"") == []


def test_ten_megabyte_event() -> None:
    payload = b'{"jsonrpc":"2.0","id":1,"result":{"blob":"' + b"A" * 10_000_000 + b'"}}'
    stream = b"event: message\r\ndata: " + payload + b"\r\n\r\n"
    expected = [event(payload.decode(), 0, len(stream))]
    assert parse([stream]) == expected
    for size in (65536, 4093, 1_000_003):
        started = time.perf_counter()
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert parse(chunks) == expected
        # Linear, not quadratic: well under a second even on a slow machine.
        assert time.perf_counter() - started < 2.0, size


def test_ten_megabyte_event_split_around_line_endings() -> None:
    stream = b"data: " + b"\xe2\x82\xac" * 3_500_000 + b"\r\n\r\n"
    expected = [event("€" * 3_500_000, 0, len(stream))]
    n = len(stream)
    for point in [1, 5, 6, 7, 8, n // 2, n - 5, n - 4, n - 3, n - 2, n - 1]:
        assert parse(split_at(stream, [point])) == expected, point


# --- properties -----------------------------------------------------------------------

TOKENS = [
    b"data",
    b"event",
    b"id",
    b"retry",
    b"foo",
    b":",
    b": ",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\r\n\r\n",
    b"x",
    b"42",
    b"\x00",
    BOM,
    "é".encode(),
    "😀".encode(),
    b"\xff",
    b"\xe2\x82",
]
messy_streams = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.binary(max_size=3)), max_size=40
).map(b"".join)

FIELD_NAMES = [b"data", b"event", b"id", b"retry", b"Data", b"x-unknown", b""]
FIELD_VALUES = [b"", b" ", b"1500", b"7", b"a b", b"1\x002", b"::", "ñ😀".encode()]
field_lines = st.builds(
    lambda name, sep, value: name + sep + value,
    st.sampled_from(FIELD_NAMES),
    st.sampled_from([b"", b":", b": ", b":  "]),
    st.one_of(st.sampled_from(FIELD_VALUES), st.text(max_size=8).map(str.encode)),
)
lines = st.one_of(
    field_lines,
    st.just(b""),  # dispatch
    st.text(max_size=8).map(lambda text: b":" + text.encode()),  # comment
)
well_formed_streams = st.builds(
    lambda bom, body, endings: (
        bom
        + b"".join(line + ending for line, ending in zip(body, endings, strict=False))
    ),
    st.sampled_from([b"", BOM]),
    st.lists(lines, max_size=25),
    st.lists(st.sampled_from([b"\n", b"\r", b"\r\n"]), min_size=25, max_size=25),
)
streams = st.one_of(
    well_formed_streams,
    messy_streams,
    st.builds(bytes.__add__, well_formed_streams, messy_streams),
)
bounds = st.one_of(st.just(DEFAULT_MAX), st.integers(min_value=1, max_value=24))


@settings(max_examples=400, deadline=None)
@given(stream=streams, max_line_bytes=bounds, data=st.data())
def test_any_chunking_gives_the_same_items(
    stream: bytes, max_line_bytes: int, data: st.DataObject
) -> None:
    points = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=8)
    )
    whole = parse([stream], max_line_bytes)
    assert parse(split_at(stream, points), max_line_bytes) == whole


@settings(max_examples=300, deadline=None)
@given(stream=streams, max_line_bytes=bounds)
def test_byte_by_byte_gives_the_same_items(stream: bytes, max_line_bytes: int) -> None:
    whole = parse([stream], max_line_bytes)
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert parse(chunks, max_line_bytes) == whole


@settings(max_examples=400, deadline=None)
@given(stream=streams, max_line_bytes=bounds)
def test_offsets_hold_the_items_bytes(stream: bytes, max_line_bytes: int) -> None:
    check_offsets(body_of(stream), parse([stream], max_line_bytes), max_line_bytes)


def reference_events(
    stream: bytes,
) -> tuple[list[tuple[str, str, str | None]], str | None]:
    """The WHATWG algorithm, transcribed literally on decoded text (no chunks)."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = re.split("\r\n|\r|\n", text)
    lines.pop()  # text after the last line ending is not a line; it is discarded at EOF
    events: list[tuple[str, str, str | None]] = []
    data, event_type, id_buffer, last_event_id = "", "", None, None
    for line in lines:
        if line == "":
            last_event_id = id_buffer
            if data == "":
                event_type = ""
                continue
            data = data.removesuffix("\n")
            events.append((event_type or "message", data, last_event_id))
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\x00" not in value:
            id_buffer = value
    return events, last_event_id


@settings(max_examples=500, deadline=None)
@given(stream=streams)
def test_matches_a_literal_transcription_of_the_spec(stream: bytes) -> None:
    parser = SseParser()
    items = (parser.feed(stream) if stream else []) + parser.feed(b"")
    events = [
        (item.type, item.data, item.last_event_id)
        for item in items
        if isinstance(item, SseEvent)
    ]
    assert (events, parser.last_event_id) == reference_events(stream)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams)
def test_offset_counts_bytes_after_the_bom(stream: bytes) -> None:
    parser = SseParser()
    if stream:
        parser.feed(stream)
    held = len(stream) < 3 and BOM.startswith(stream)
    assert parser.offset == (0 if held else len(body_of(stream)))


# --- throughput -----------------------------------------------------------------------


def test_throughput_small_events() -> None:
    message = (
        b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n'
    )
    stream = message * 20_000
    parser = SseParser()
    started = time.perf_counter()
    count = 0
    for i in range(0, len(stream), 4096):
        count += len(parser.feed(stream[i : i + 4096]))
    elapsed = time.perf_counter() - started
    assert count == 20_000
    # The recorder needs >= 20k events/s; leave ample room for slow CI machines.
    assert count / elapsed > 20_000
