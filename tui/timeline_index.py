"""The order of a session's timeline: which row (source, id) sits at each position.

Design notes:
- A session's timeline interleaves four tables (exchanges, streams, SSE items, messages). Each
  is read in keyset pages in id order, which is the recorder's arrival order and so, to within
  a few rows, time order; the pages are merged by time. Stream closes are the exception (a long
  GET closes after thousands of later streams opened), so they wait in a heap until no later
  open can precede them.
- The merge works a block at a time, not a row at a time: every source's buffered keys up to
  the earliest "last time" among the sources still reading are taken, sorted in C and appended
  with array and itertools calls. A per-row Python loop (heapq.merge) cost 3 us a row, which is
  2 s on a 750k-row session; the block merge costs a fraction of that.
- The index holds only (source, id, time) per row, in flat arrays: a 750k-row session costs
  about 13 MB and no Python object per row. Rows for display are loaded by the widget, by id,
  for the positions on screen.
- A silence longer than the gap threshold becomes a row of its own (source GAP), so a long
  quiet stretch is visible at a glance; gaps are measured over everything on the wire, so they
  are only inserted when nothing is filtered out.
- `TimelineBuilder` runs in a worker thread and produces `IndexChunk`s with absolute positions;
  the UI thread only extends arrays. The builder keeps keyset cursors, so the live tail goes on
  where the scan ended, with `id > last_seen` queries.
"""

from __future__ import annotations

import heapq
import math
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter
from typing import Any, Final

from recorder.store import BrowseReader
from tui.filters import TimelineFilter

# Sources, numbered in the order rows of equal time are shown: a request's exchange before the
# request, a stream's open before what it carries, its close after.
EXCHANGE: Final = 0
STREAM_OPEN: Final = 1
SSE: Final = 2
MESSAGE: Final = 3
STREAM_CLOSE: Final = 4
GAP: Final = 5
# Data that passed through but is missing from the capture (recorder.gaps): a row of its own.
CAPTURE_GAP: Final = 6
SOURCE_NAMES: Final = ("exchange", "stream-open", "sse", "message", "stream-close", "gap",
                       "capture-gap")
# Not a row: "nothing more from this source before this time" (see `_windowed`).
WATERMARK: Final = 9

RowKey = tuple[int, int]  # (source, id); for a GAP row the id is the silence in milliseconds
Key = tuple[float, int, int]  # (time, source, id): the merge order

# Keyset page sizes: small first pages put something on screen quickly, then pages grow.
FIRST_PAGE: Final = 256
MAX_PAGE: Final = 20_000

_time, _source, _id = itemgetter(0), itemgetter(1), itemgetter(2)


@dataclass(slots=True)
class IndexChunk:
    """Rows to append to a `TimelineIndex`, starting at position `start`.

    `by_source` holds, per source, the ids and positions of its rows in this chunk: built by
    the worker, so the UI thread only appends arrays.
    """

    start: int
    sources: array[int] = field(default_factory=lambda: array("b"))
    ids: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    by_source: dict[int, tuple[array[int], array[int]]] = field(default_factory=dict)
    unordered: set[int] = field(default_factory=set)  # sources whose ids go backwards

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_keys(cls, start: int, keys: list[Key]) -> IndexChunk:
        """A chunk of sorted keys, built with C-level iteration only."""
        chunk = cls(start, array("b", map(_source, keys)), array("q", map(_id, keys)),
                    array("d", map(_time, keys)))
        positions = range(start, start + len(keys))
        for source in set(chunk.sources):
            mask = list(map(source.__eq__, chunk.sources))
            ids = array("q", compress(chunk.ids, mask))
            chunk.by_source[source] = (ids, array("q", compress(positions, mask)))
            # Only closes can go backwards (a stream closes in another order than it opened).
            if source == STREAM_CLOSE and any(map(int.__gt__, ids, ids[1:])):
                chunk.unordered.add(source)
        return chunk


class _SourcePositions:
    """Positions of one source's rows, searchable by id.

    Ids arrive ascending for every source but stream closes; for those a sorted copy is built
    on the first lookup after an append.
    """

    __slots__ = ("_ordered", "_sorted", "ids", "positions")

    def __init__(self) -> None:
        self.ids = array("q")
        self.positions = array("q")
        self._ordered = True
        self._sorted: tuple[array[int], array[int]] | None = None

    def extend(self, ids: array[int], positions: array[int], ordered: bool) -> None:
        if not ordered or (self.ids and ids and ids[0] < self.ids[-1]):
            self._ordered = False
        self.ids.extend(ids)
        self.positions.extend(positions)
        self._sorted = None

    def find(self, row_id: int) -> int | None:
        ids, positions = self.ids, self.positions
        if not self._ordered:
            if self._sorted is None:
                pairs = sorted(zip(ids, positions))
                self._sorted = (array("q", map(itemgetter(0), pairs)),
                                array("q", map(itemgetter(1), pairs)))
            ids, positions = self._sorted
        i = bisect_left(ids, row_id)
        if i < len(ids) and ids[i] == row_id:
            return int(positions[i])
        return None


class TimelineIndex:
    """Positions -> (source, id, time), and back. Appended to only, on the UI thread."""

    def __init__(self) -> None:
        self.sources = array("b")
        self.ids = array("q")
        self.times = array("d")
        self._by_source = [_SourcePositions() for _ in SOURCE_NAMES]

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, chunk: IndexChunk) -> None:
        if chunk.start != len(self.ids):
            raise ValueError(f"index chunk starts at {chunk.start}, index has {len(self.ids)}")
        for source, (ids, positions) in chunk.by_source.items():
            self._by_source[source].extend(ids, positions, source not in chunk.unordered)
        self.sources.extend(chunk.sources)
        self.ids.extend(chunk.ids)
        self.times.extend(chunk.times)

    def key(self, position: int) -> RowKey:
        return (self.sources[position], self.ids[position])

    def position_of(self, source: int, row_id: int) -> int | None:
        return self._by_source[source].find(row_id)

    def position_at_time(self, t: float) -> int:
        """The first row at or after `t` (rows are in time order to within arrival jitter)."""
        return min(bisect_left(self.times, t), max(len(self.ids) - 1, 0))

    def next_of_source(self, source: int, position: int, step: int) -> int | None:
        """The next row of `source` after `position` (step 1) or before it (step -1)."""
        positions = self._by_source[source].positions
        if step > 0:
            i = bisect_right(positions, position)
            return int(positions[i]) if i < len(positions) else None
        i = bisect_left(positions, position) - 1
        return int(positions[i]) if i >= 0 else None

    def message_near(self, position: int, step: int = -1, limit: int = 10_000) -> int | None:
        """The id of the nearest message row at `position` or beyond it in direction `step`."""
        end = len(self.ids)
        for _ in range(limit):
            if not 0 <= position < end:
                return None
            if self.sources[position] == MESSAGE:
                return int(self.ids[position])
            position += step
        return None


def _keys(page: list[tuple[int, float]], source: int) -> list[Key]:
    """(id, t) rows -> (t, source, id) keys, without a Python-level loop."""
    return list(zip(map(itemgetter(1), page), repeat(source), map(itemgetter(0), page)))


class _Buffer:
    """Keys read from one source and not merged yet."""

    __slots__ = ("done", "keys", "pages")

    def __init__(self, pages: Iterator[list[Key]]) -> None:
        self.pages = pages
        self.keys: list[Key] = []
        self.done = False

    def fill(self) -> None:
        page = next(self.pages, None)
        if page is None:
            self.done = True
        else:
            self.keys.extend(page)


def _merge(sources: list[Iterator[list[Key]]]) -> Iterator[list[Key]]:
    """Blocks of keys in time order from sources that each come in (roughly) time order.

    A block holds every buffered key up to the earliest last-buffered time among sources that
    may still bring more: nothing they read later can sort before it.
    """
    buffers = [_Buffer(pages) for pages in sources]
    while True:
        for buffer in buffers:
            while not buffer.done and not buffer.keys:
                buffer.fill()
        reading = [b.keys[-1][0] for b in buffers if not b.done]
        frontier = min(reading) if reading else math.inf
        block: list[Key] = []
        for buffer in buffers:
            cut = bisect_right(buffer.keys, (frontier, math.inf, math.inf))
            block += buffer.keys[:cut]
            del buffer.keys[:cut]
        if block:
            block.sort()
            yield block
        elif all(b.done and not b.keys for b in buffers):
            return
        for buffer in buffers:
            # The sources that set the frontier are drained: read their next page.
            if not buffer.done and not buffer.keys:
                buffer.fill()


class TimelineBuilder:
    """Builds a session's timeline in a worker thread: first the scan, then live increments.

    Not thread-safe by itself; the owner runs one builder call at a time (`lock`).
    """

    def __init__(self, session_id: int, timeline_filter: TimelineFilter,
                 gap_threshold: float | None) -> None:
        self.session_id = session_id
        self.filter = timeline_filter
        # Gaps measure silence on the wire, which a filtered view cannot see.
        self.gap_threshold = None if timeline_filter.active else gap_threshold
        self.lock = threading.Lock()
        self.count = 0
        self.last_time: float | None = None
        self.cursors = {EXCHANGE: 0, STREAM_OPEN: 0, SSE: 0, MESSAGE: 0, CAPTURE_GAP: 0}
        self.open_streams: set[int] = set()
        self.scanned = False

    # Sources: each yields pages of keys in (roughly) time order ----------------------------

    def _paged(self, fetch: Callable[[int, int], list[Any]], source: int,
               first: int) -> Iterator[list[Any]]:
        """Keyset pages, growing, until a short page. The cursor moves as pages are fetched;
        a scan or increment merges all it fetched before it returns."""
        limit = first
        while True:
            page = fetch(self.cursors[source], limit)
            if page:
                self.cursors[source] = page[-1][0]
                yield page
            if len(page) < limit:
                return
            limit = min(limit * 4, MAX_PAGE)

    def _windowed(self, reader: BrowseReader, table: str, source: int,
                  fetch: Callable[[int, int | None], list[tuple[int, float]]],
                  first: int) -> Iterator[list[Key]]:
        """A filtered source, read window by window of the session's rows in `table`.

        A filter can match one row in 100,000 (heartbeats among messages, flagged rows); asking
        for "the next page of matches" would scan until it found one, and the merge would wait
        for it. Each window instead ends with a watermark at the window's last time: the merge
        learns that nothing from this source comes earlier, and moves on.
        """
        size = first
        while True:
            after = self.cursors[source]
            end = reader.window_end(table, self.session_id, after_id=after, rows_in_window=size)
            if end is None:
                # The last window runs to the session's last row as of now; rows committed
                # later are the next increment's (so the cursor never skips one).
                last = reader.last_id(table, self.session_id)
                if last is None or last <= after:
                    return
                end_id, end_t = last, None
            else:
                end_id, end_t = end
            self.cursors[source] = end_id
            page = _keys(fetch(after, end_id), source)
            if end_t is not None:
                page.append((end_t, WATERMARK, end_id))
            yield page
            if end_t is None:
                return
            size = min(size * 4, MAX_PAGE)

    def _streams(self, pages: Iterator[list[tuple[int, float, float | None]]],
                 ) -> Iterator[list[Key]]:
        # Opens come in id (= open time) order; a close is released once an open later than it
        # was read, since no stream opened afterwards can close before it opened.
        closes: list[tuple[float, int]] = []
        for page in pages:
            keys: list[Key] = []
            for stream_id, opened, closed in page:
                keys.append((opened, STREAM_OPEN, stream_id))
                if closed is None:
                    self.open_streams.add(stream_id)
                else:
                    heapq.heappush(closes, (closed, stream_id))
            latest = page[-1][1]
            while closes and closes[0][0] <= latest:
                t, stream_id = heapq.heappop(closes)
                keys.append((t, STREAM_CLOSE, stream_id))
            keys.sort()
            yield keys
        if closes:
            yield [(t, STREAM_CLOSE, stream_id) for t, stream_id in sorted(closes)]

    def _sources(self, reader: BrowseReader, first: int) -> list[Iterator[list[Key]]]:
        f, sid = self.filter, self.session_id
        found: list[Iterator[list[Key]]] = []
        if f.wants_exchanges and f.flagged_only:
            found.append(self._windowed(reader, "exchanges", EXCHANGE, lambda a, u: (
                reader.exchange_keys(sid, after_id=a, until_id=u, limit=None,
                                     flagged_only=True)), first))
        elif f.wants_exchanges:
            found.append(_keys(page, EXCHANGE) for page in self._paged(
                lambda a, n: reader.exchange_keys(sid, after_id=a, limit=n), EXCHANGE, first))
        if f.wants_streams:
            found.append(self._streams(self._paged(
                lambda a, n: reader.stream_keys(sid, after_id=a, limit=n,
                                                flagged_only=f.flagged_only),
                STREAM_OPEN, first)))
        if f.wants_heartbeats or f.wants_other_sse:
            found.append(self._windowed(reader, "sse_events", SSE, lambda a, u: reader.sse_keys(
                sid, after_id=a, until_id=u, limit=None, comments=f.wants_heartbeats,
                others=f.wants_other_sse), first))
        if f.wants_messages and (f.methods or f.directions or f.kinds or f.flagged_only):
            found.append(self._windowed(reader, "messages", MESSAGE, lambda a, u: (
                reader.message_keys(sid, after_id=a, until_id=u, limit=None,
                                    methods=sorted(f.methods), directions=sorted(f.directions),
                                    kinds=f.message_kinds, flagged_only=f.flagged_only)),
                first))
        elif f.wants_messages:
            found.append(_keys(page, MESSAGE) for page in self._paged(
                lambda a, n: reader.message_keys(sid, after_id=a, limit=n), MESSAGE, first))
        # Capture gaps are shown whatever the filter: what is missing is never filtered out.
        found.append(_keys(page, CAPTURE_GAP) for page in self._paged(
            lambda a, n: reader.capture_gap_keys(sid, after_id=a, limit=n), CAPTURE_GAP, first))
        return found

    # Chunks -------------------------------------------------------------------------------

    def _chunk(self, block: list[Key]) -> IndexChunk | None:
        """Sorted keys -> the next chunk, with gap rows where the silence was long enough."""
        if any(map(WATERMARK.__eq__, map(_source, block))):
            block = [key for key in block if key[1] != WATERMARK]
        if not block:
            return None
        threshold = self.gap_threshold
        if threshold is not None:
            times = list(map(_time, block))
            previous = [self.last_time if self.last_time is not None else times[0], *times]
            gaps = list(compress(range(len(times)), map(
                float(threshold).__le__, map(float.__sub__, times, previous))))
            if gaps:
                with_gaps: list[Key] = []
                start = 0
                for i in gaps:
                    with_gaps += block[start:i]
                    last = previous[i]
                    with_gaps.append((last, GAP, round((times[i] - last) * 1000)))
                    start = i
                with_gaps += block[start:]
                block = with_gaps
        chunk = IndexChunk.from_keys(self.count, block)
        self.count += len(block)
        self.last_time = max(block[-1][0], self.last_time or block[-1][0])
        return chunk

    def scan(self, reader: BrowseReader) -> Iterator[IndexChunk]:
        """The whole session as it is now, in chunks: a first screenful, then bigger ones."""
        for block in _merge(self._sources(reader, FIRST_PAGE)):
            chunk = self._chunk(block)
            if chunk is not None:
                yield chunk
        self.scanned = True

    def increment(self, reader: BrowseReader) -> IndexChunk | None:
        """Rows committed since the last scan or increment (the live tail), or None."""
        keys: list[Key] = []
        for pages in self._sources(reader, MAX_PAGE):
            for page in pages:
                keys += page
        if self.open_streams:
            # Streams that were open last time and have closed since.
            for stream_id, closed in reader.stream_closes(sorted(self.open_streams)):
                self.open_streams.discard(stream_id)
                keys.append((closed, STREAM_CLOSE, stream_id))
        keys.sort()
        return self._chunk(keys) if keys else None
