"""The session timeline: a virtual list of everything that crossed the wire, one row per line.

Like Toolong's `LogLines`, it renders only the rows on screen. The row order (`TimelineIndex`)
is built by a thread worker in keyset pages and extended on the UI thread chunk by chunk, so
the first screenful shows before a 500k-row session is fully indexed. Rows are loaded by id,
for the window around the viewport, by another worker, into an LRU cache; until a row is
loaded it renders as a placeholder. A timer runs the live tail (`id > last_seen`) when the
capture changed.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.worker import get_current_worker

from recorder.store import StoreError
from tui.filters import TimelineFilter
from tui.flag_index import FlagIndex
from tui.readers import ChangeWatcher, ReaderPool
from tui.rows import Entry, format_offset, load_entries
from tui.timeline_index import (
    EXCHANGE,
    GAP,
    MESSAGE,
    STREAM_CLOSE,
    STREAM_OPEN,
    IndexChunk,
    RowKey,
    TimelineBuilder,
    TimelineIndex,
)
from tui.timeline_text import entry_text, gap_text

FIRST_PAINT_WAIT = 1.0  # seconds the scan waits for the first screenful to be painted
SIZE_UPDATE_SECONDS = 0.25  # how often a scan in progress grows the scrollbar

class Timeline(ScrollView, can_focus=True, inherit_bindings=False):
    """A virtual list over one session's timeline, with a row cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f,space", "page(1)", "Page down", show=False),
        Binding("home,g", "first", "First row", show=False),
        Binding("end,G", "last", "Last row (follow)", show=False),
        Binding("o", "follow_link", "Req↔Resp"),
        Binding("right_square_bracket", "next_gap(1)", "Next gap", show=False),
        Binding("left_square_bracket", "next_gap(-1)", "Previous gap", show=False),
        Binding("enter", "select", "Detail", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--cursor", "timeline--placeholder", "timeline--time", "timeline--c2s",
        "timeline--s2c", "timeline--request", "timeline--result", "timeline--error",
        "timeline--notification", "timeline--http", "timeline--stream", "timeline--heartbeat",
        "timeline--warn", "timeline--good", "timeline--bad", "timeline--gap",
        "timeline--gap-long", "timeline--flag-error", "timeline--flag-warning",
        "timeline--flag-info",
    }

    DEFAULT_CSS = """
    Timeline {
        scrollbar-gutter: stable;
        overflow-x: hidden;
        overflow-y: scroll;
        & > .timeline--cursor { background: $block-cursor-blurred-background; }
        &:focus > .timeline--cursor { background: $block-cursor-background;
                                      color: $block-cursor-foreground; }
        & > .timeline--placeholder { color: $text-disabled; }
        & > .timeline--time { color: $text-muted; }
        & > .timeline--c2s { color: $accent; }
        & > .timeline--s2c { color: $secondary; }
        & > .timeline--request { color: $accent; text-style: bold; }
        & > .timeline--result { color: $success; text-style: bold; }
        & > .timeline--error { color: $error; text-style: bold; }
        & > .timeline--notification { color: $secondary; }
        & > .timeline--http { color: $text-muted; }
        & > .timeline--stream { color: $primary; }
        & > .timeline--heartbeat { color: $text-disabled; }
        & > .timeline--warn { color: $warning; }
        & > .timeline--good { color: $success; }
        & > .timeline--bad { color: $error; }
        & > .timeline--gap { color: $warning; }
        & > .timeline--gap-long { color: $error; text-style: bold; }
        & > .timeline--flag-error { background: $error; }
        & > .timeline--flag-warning { background: $warning; }
        & > .timeline--flag-info { background: $primary; }
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)

    # Messages -----------------------------------------------------------------------------

    class RowHighlighted(Message):
        """The cursor moved to a row (coalesces: only the latest matters)."""

        def __init__(self, timeline: Timeline, position: int, key: RowKey) -> None:
            super().__init__()
            self.timeline = timeline
            self.position = position
            self.key = key

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, Timeline.RowHighlighted)

    class RowSelected(Message):
        """Enter was pressed on a row."""

        def __init__(self, timeline: Timeline, position: int, key: RowKey) -> None:
            super().__init__()
            self.timeline = timeline
            self.position = position
            self.key = key

    class LinkFollowed(Message):
        """The cursor jumped from one end of a call to the other."""

        def __init__(self, timeline: Timeline, origin: RowKey, target: RowKey) -> None:
            super().__init__()
            self.timeline = timeline
            self.origin = origin
            self.target = target

    class IndexProgressed(Message):
        """More of the session is indexed (coalesces during a scan)."""

        def __init__(self, timeline: Timeline, rows: int, complete: bool, live: bool) -> None:
            super().__init__()
            self.timeline = timeline
            self.rows = rows
            self.complete = complete
            self.live = live

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, Timeline.IndexProgressed) and not message.live

    class ChunkIndexed(Message):
        """Worker -> UI thread: rows to append to the index (never dropped)."""

        def __init__(self, generation: int, chunk: IndexChunk | None, complete: bool,
                     live: bool = False) -> None:
            super().__init__()
            self.generation = generation
            self.chunk = chunk
            self.complete = complete
            self.live = live

    class RowsLoaded(Message):
        """Worker -> UI thread: entries for rows that were on screen or near it."""

        def __init__(self, requested: list[RowKey], entries: list[Entry]) -> None:
            super().__init__()
            self.requested = requested
            self.entries = entries

    class LoadFailed(Message):
        """A worker could not read the capture."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    # Setup --------------------------------------------------------------------------------

    def __init__(self, pool: ReaderPool, session_id: int, started_at: float,
                 flags: FlagIndex | None = None, *, gap_threshold: float | None = 2.0,
                 poll_interval: float | None = 1.0, timeline_filter: TimelineFilter | None = None,
                 name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.pool = pool
        self.session_id = session_id
        self.started_at = started_at
        self.flags = flags or FlagIndex()
        self.gap_threshold = gap_threshold
        self.poll_interval = poll_interval
        self.filter = timeline_filter or TimelineFilter()
        self.index = TimelineIndex()
        self.index_complete = False
        self.painted_rows = 0  # rendered loaded rows; the benchmark waits on it
        self._generation = 0
        self._builder = TimelineBuilder(session_id, self.filter, gap_threshold)
        self._entries: LRUCache[RowKey, Entry] = LRUCache(4096)
        self._strips: LRUCache[tuple[int, int, int, bool], Strip] = LRUCache(1024)
        self._missing: set[RowKey] = set()
        self._loading: set[RowKey] = set()
        self._load_scheduled = False
        self._target: RowKey | None = None
        self._watcher = ChangeWatcher(pool.path)
        self._painted = threading.Event()
        self._size_timer: Timer | None = None
        self._live_update = False

    def on_mount(self) -> None:
        self._restart()
        if self.poll_interval:
            self.set_interval(self.poll_interval, self._poll)

    def on_unmount(self) -> None:
        self._painted.set()
        self._watcher.close()

    @property
    def row_count(self) -> int:
        return len(self.index)

    def set_filter(self, timeline_filter: TimelineFilter) -> None:
        """Show another selection of rows, keeping the cursor on the same row if it stays."""
        keep = self.current_key()
        self.filter = timeline_filter
        self._target = keep if keep and keep[0] != GAP else None
        self._restart()

    def refresh_rows(self) -> None:
        """Redraw every row (flags or styles changed), keeping loaded rows."""
        self._strips.clear()
        self.refresh()

    def set_gap_threshold(self, seconds: float | None) -> None:
        self.gap_threshold = seconds
        self.set_filter(self.filter)

    def _restart(self) -> None:
        if self._size_timer is not None:
            self._size_timer.stop()
            self._size_timer = None
        self._generation += 1
        self.index = TimelineIndex()
        self.index_complete = False
        self._builder = TimelineBuilder(self.session_id, self.filter, self.gap_threshold)
        self._strips.clear()
        self.virtual_size = Size(self.size.width, 0)
        self.set_reactive(Timeline.cursor_row, 0)
        self.scroll_to(y=0, animate=False, immediate=True)
        self._painted = threading.Event()
        self._scan(self._generation, self._builder, self._painted)
        self.refresh()

    # Workers ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="timeline-index")
    def _scan(self, generation: int, builder: TimelineBuilder, painted: threading.Event) -> None:
        worker = get_current_worker()
        try:
            with builder.lock, self.pool.reader() as reader:
                for number, chunk in enumerate(builder.scan(reader)):
                    if worker.is_cancelled:
                        return
                    self.post_message(self.ChunkIndexed(generation, chunk, complete=False))
                    if number == 0:
                        # The rest of the scan is busy Python; let the first screenful load
                        # and paint before competing with it for the interpreter.
                        painted.wait(FIRST_PAINT_WAIT)
        except StoreError as exc:
            self.post_message(self.LoadFailed(str(exc)))
        self.post_message(self.ChunkIndexed(generation, None, complete=True))

    def _poll(self) -> None:
        if self.index_complete:
            self._poll_worker(self._generation, self._builder)

    @work(thread=True, group="timeline-poll")
    def _poll_worker(self, generation: int, builder: TimelineBuilder) -> None:
        # A poll that finds the builder busy (a scan, another poll) just skips this tick.
        if not builder.lock.acquire(blocking=False):
            return
        try:
            if not self._watcher.changed():
                return
            with self.pool.reader() as reader:
                chunk = builder.increment(reader)
        except StoreError as exc:
            self.post_message(self.LoadFailed(str(exc)))
            return
        finally:
            builder.lock.release()
        self.post_message(self.ChunkIndexed(generation, chunk, complete=True, live=True))

    @work(thread=True, group="timeline-rows")
    def _load(self, keys: list[RowKey]) -> None:
        try:
            with self.pool.reader() as reader:
                entries = load_entries(reader, keys)
        except StoreError as exc:
            self.post_message(self.LoadFailed(str(exc)))
            entries = []
        self.post_message(self.RowsLoaded(keys, entries))

    # Worker results -----------------------------------------------------------------------

    def on_timeline_chunk_indexed(self, message: ChunkIndexed) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        index = self.index
        before = len(index)
        following = before > 0 and self.cursor_row >= before - 1
        if message.chunk is not None and len(message.chunk):
            index.extend(message.chunk)
            if message.live:
                # Rows already shown may have changed (a call answered, a stream closed).
                self._entries.clear()
                self._strips.clear()
        if message.complete:
            self.index_complete = True
        if before == 0 and len(index) and self._target is None:
            self.cursor_row = 0
        elif message.live and following and len(index) > before:
            self.cursor_row = len(index) - 1
        if self._target is not None:
            self._reach_target()
        # A new virtual size means a new layout and a whole-screen render: during a scan,
        # at most a few times a second (the index itself is already extended).
        self._live_update = message.live
        if message.live or message.complete or before == 0:
            self._publish_size()
        elif self._size_timer is None:
            self._size_timer = self.set_timer(SIZE_UPDATE_SECONDS, self._publish_size)
        top = int(self.scroll_offset.y)
        if message.live or before < top + self.scrollable_content_region.height:
            self.refresh()  # only when the new rows can be on screen

    def _publish_size(self) -> None:
        if self._size_timer is not None:
            self._size_timer.stop()
            self._size_timer = None
        self.virtual_size = Size(self.size.width, len(self.index))
        self.post_message(self.IndexProgressed(self, len(self.index), self.index_complete,
                                               self._live_update))

    def on_timeline_rows_loaded(self, message: RowsLoaded) -> None:
        message.stop()
        for entry in message.entries:
            self._entries[entry.key] = entry
        found = {entry.key for entry in message.entries}
        for key in message.requested:
            self._loading.discard(key)
            if key not in found:
                # Gone from the capture (or never there): say so rather than ask forever.
                self._entries[key] = Entry(key=key, t=0.0, direction=None, badge="?",
                                           tone="warn", text="(row not found in the capture)")
        self._strips.clear()
        self.refresh()

    def on_timeline_load_failed(self, message: LoadFailed) -> None:
        message.stop()
        self.notify(message.error, title="Reading the capture failed", severity="error")

    # Navigation -----------------------------------------------------------------------------

    def validate_cursor_row(self, value: int) -> int:
        return max(0, min(value, len(self.index) - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        # Strips are cached per (row, selected), so only the two rows need drawing again.
        self.refresh_line(old)
        self.refresh_line(new)
        self._scroll_to_cursor()
        if len(self.index):
            self.post_message(self.RowHighlighted(self, new, self.index.key(new)))

    def _scroll_to_cursor(self) -> None:
        height = self.scrollable_content_region.height or 1
        top = int(self.scroll_offset.y)
        row = self.cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    def action_cursor(self, step: int) -> None:
        self.cursor_row += step

    def action_page(self, step: int) -> None:
        self.cursor_row += step * max(self.scrollable_content_region.height - 1, 1)

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        self.cursor_row = len(self.index) - 1

    def action_select(self) -> None:
        if len(self.index):
            self.post_message(self.RowSelected(self, self.cursor_row,
                                               self.index.key(self.cursor_row)))

    def action_next_gap(self, step: int) -> None:
        position = self.index.next_of_source(GAP, self.cursor_row, step)
        if position is None:
            self.notify("Gaps show only when nothing is filtered" if self.filter.active
                        else "No further gap", timeout=2)
        else:
            self.cursor_row = position

    def action_follow_link(self) -> None:
        entry = self.current_entry()
        if entry is None or entry.linked is None:
            self.notify("This row has no request or response to jump to", timeout=2)
            return
        if self.jump_to_key(entry.linked):
            self.post_message(self.LinkFollowed(self, entry.key, entry.linked))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self.cursor_row = int(self.scroll_offset.y) + offset.y

    # Queries used by the screen ------------------------------------------------------------

    def current_key(self) -> RowKey | None:
        return self.index.key(self.cursor_row) if len(self.index) else None

    def current_entry(self) -> Entry | None:
        key = self.current_key()
        return self._entries.get(key) if key is not None else None

    def jump_to_key(self, key: RowKey) -> bool:
        """Move the cursor to a row; if the scan has not reached it yet, go when it does.

        Returns False (and says why) when the row is not in this view.
        """
        position = self.index.position_of(*key)
        if position is not None:
            self._target = None
            self.cursor_row = position
            return True
        if not self.index_complete:
            self._target = key
            return True
        self.notify("That row is hidden by the current filter" if self.filter.active
                    else "That row is not in this session's timeline", timeout=3)
        return False

    def jump_to_time(self, t: float) -> None:
        if len(self.index):
            self.cursor_row = self.index.position_at_time(t)

    def _reach_target(self) -> None:
        assert self._target is not None
        position = self.index.position_of(*self._target)
        if position is not None:
            self._target = None
            self.cursor_row = position
        elif self.index_complete:
            self._target = None
            self.cursor_row = self.cursor_row  # announce the row the cursor stayed on

    def visible_rows_loaded(self) -> bool:
        top = int(self.scroll_offset.y)
        end = min(top + self.scrollable_content_region.height, len(self.index))
        return all(self.index.key(p)[0] == GAP or self.index.key(p) in self._entries
                   for p in range(top, end))

    # Rendering ----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        position = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        if position >= len(self.index):
            return Strip.blank(width, self.rich_style)
        source, row_id = self.index.key(position)
        selected = position == self.cursor_row
        cache_key = (source, row_id, width, selected)
        strip = self._strips.get(cache_key)
        if strip is not None:
            return strip
        if source == GAP:
            text = self._gap_text(position, row_id)
        else:
            entry = self._entries.get((source, row_id))
            if entry is None:
                self._want((source, row_id))
                text = Text(f"  {format_offset(self.index.times[position] - self.started_at)}"
                            "  …", style=self._style("placeholder"))
                return self._finish(text, width, selected)
            text = self._entry_text(entry, width)
            self.painted_rows += 1
            self._painted.set()
        strip = self._finish(text, width, selected)
        self._strips[cache_key] = strip
        return strip

    def _finish(self, text: Text, width: int, selected: bool) -> Strip:
        text.truncate(width, overflow="ellipsis", pad=True)
        style = self.rich_style
        if selected:
            style = style + self.get_component_rich_style("timeline--cursor")
        segments = list(text.render(self.app.console))
        return Strip(segments, text.cell_len).apply_style(style).crop_extend(0, width, style)

    def _style(self, tone: str) -> Style:
        # Colour and weight only: the row's own background (the cursor's, on the cursor row)
        # must show through. Full styles, not partial ones, so translucent theme colours
        # ($text-muted) come blended.
        if not tone:
            return Style()
        full = self.get_component_rich_style(f"timeline--{tone}")
        if tone.startswith("flag-"):
            return Style(color=full.bgcolor)
        return Style(color=full.color, bold=full.bold, italic=full.italic)

    def _gap_text(self, position: int, milliseconds: int) -> Text:
        return gap_text(self.index.times[position] - self.started_at, milliseconds,
                        self.gap_threshold or 1.0, self._style)

    def _entry_text(self, entry: Entry, width: int) -> Text:
        source = entry.key[0]
        severity = self.flags.severity_of(
            message_id=entry.key[1] if source == MESSAGE else None,
            call_id=entry.call_id if source == MESSAGE else None,
            stream_id=entry.stream_id if source in (STREAM_OPEN, STREAM_CLOSE) else None,
            exchange_id=entry.exchange_id if source == EXCHANGE else None)
        return entry_text(entry, width, entry.t - self.started_at, severity, self._style)

    # Row loading ---------------------------------------------------------------------------

    def _want(self, key: RowKey) -> None:
        self._missing.add(key)
        if not self._load_scheduled:
            self._load_scheduled = True
            self.call_later(self._request_rows)

    def _request_rows(self) -> None:
        self._load_scheduled = False
        if self._loading:
            return  # one load at a time; its RowsLoaded refresh asks again for what is left
        height = max(self.scrollable_content_region.height, 1)
        top = int(self.scroll_offset.y)
        # The screen, and a screen either side of it, so paging feels instant.
        start, end = max(top - height, 0), min(top + 2 * height, len(self.index))
        keys = [k for k in (self.index.key(p) for p in range(start, end))
                if k[0] != GAP and k not in self._entries]
        keys += [k for k in self._missing if k not in self._entries and k not in keys]
        self._missing.clear()
        if keys:
            self._loading.update(keys)
            self._load(keys)
