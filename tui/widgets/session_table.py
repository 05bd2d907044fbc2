"""The sessions of a capture: a sortable, filterable virtual table that follows a recording.

Like the timeline it renders only the rows on screen (a DataTable builds a row object per
session, which took seconds for 5,000 sessions, on every sort and every live update). Columns
are shown in priority order while they fit, so 80 columns show the ones that matter most.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from recorder.store import StoreError
from tui.readers import ChangeWatcher, ReaderPool
from tui.session_columns import (
    COLUMN_KEYS,
    COLUMNS,
    haystack,
    layout,
    natural_widths,
    with_zeros,
)
from tui.stats import percentiles_by_key

# A session counts as possibly still active (its counts re-read on a change) when its last
# activity is this close to the newest activity in the capture.
ACTIVE_WINDOW_SECONDS = 300.0
LATENCY_REFRESH_POLLS = 10
FIRST_PAINT_WAIT = 1.0


class SessionTable(ScrollView, can_focus=True, inherit_bindings=False):
    """Every session of the capture; new ones appear while a recorder writes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("enter", "select", "Open"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse sort", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "session-table--header", "session-table--cursor", "session-table--sorted"}

    DEFAULT_CSS = """
    SessionTable {
        scrollbar-gutter: stable;
        overflow-x: hidden;
        overflow-y: auto;
        & > .session-table--header { text-style: bold; color: $text-accent; }
        & > .session-table--sorted { text-style: bold underline; color: $text-accent; }
        & > .session-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .session-table--cursor { background: $block-cursor-background;
                                           color: $block-cursor-foreground; }
    }
    """

    cursor_row: reactive[int] = reactive(0, repaint=False)

    class SessionSelected(Message):
        """A session was chosen (Enter, or a click on the highlighted row)."""

        def __init__(self, table: SessionTable, session: dict[str, Any]) -> None:
            super().__init__()
            self.table = table
            self.session = session

        @property
        def session_id(self) -> int:
            return int(self.session["id"])

    class SessionsChanged(Message):
        """The set of sessions, or what is shown of it, changed."""

        def __init__(self, table: SessionTable, total: int, shown: int) -> None:
            super().__init__()
            self.table = table
            self.total = total
            self.shown = shown

    class SessionsFetched(Message):
        """Worker -> UI thread: session rows, their counts, their latency percentiles; any
        part may be missing (the first load sends them one after the other)."""

        def __init__(self, sessions: list[dict[str, Any]] | None = None,
                     counts: dict[int, dict[str, int]] | None = None,
                     latencies: dict[int, tuple[float, float]] | None = None,
                     latency_ids: list[int] | None = None) -> None:
            super().__init__()
            self.sessions = sessions or []
            self.counts = counts
            self.latencies = latencies
            self.latency_ids = latency_ids

    def __init__(self, pool: ReaderPool, *, poll_interval: float | None = 1.0,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.pool = pool
        self.poll_interval = poll_interval
        self.sessions: dict[int, dict[str, Any]] = {}
        self.sort_key = "id"
        self.sort_reverse = False
        self.filter_text = ""
        self.counts_loaded = False
        self.percentiles_loaded = False
        self.painted_rows = 0  # rendered lines with sessions in them; the benchmark waits on it
        self._shown: list[dict[str, Any]] = []
        self._natural: dict[str, int] = {}
        self._strips: LRUCache[tuple[int, int, bool], Strip] = LRUCache(512)
        self._watcher = ChangeWatcher(pool.path)
        self._latencies_read_at = 0.0
        self._latencies_stale = False
        self._latency_every = LATENCY_REFRESH_POLLS * (poll_interval or 1.0)
        self._painted = threading.Event()

    def on_mount(self) -> None:
        self._fetch_all()
        if self.poll_interval:
            self.set_interval(self.poll_interval, self.poll)

    def on_unmount(self) -> None:
        self.stop_waiting_for_paint()
        self._watcher.close()

    def stop_waiting_for_paint(self) -> None:
        """The table will not paint soon (covered by another screen): load on at once."""
        self._painted.set()

    @property
    def row_count(self) -> int:
        return len(self._shown)

    # Workers ------------------------------------------------------------------------------

    @work(thread=True, group="sessions")
    def _fetch_all(self) -> None:
        # Three passes, cheapest first, each shown as it lands: the rows (instant), the counts
        # (a grouped pass over each table), the latency percentiles (every answered call).
        try:
            self._watcher.changed()  # the baseline for the live tail
            with self.pool.reader() as reader:
                sessions = reader.session_rows()
                self.post_message(self.SessionsFetched(sessions))
                if sessions:
                    # Let the table paint before the heavier passes compete with it.
                    self._painted.wait(FIRST_PAINT_WAIT)
                counts = with_zeros(reader.session_counts(), [s["id"] for s in sessions])
                self.post_message(self.SessionsFetched(counts=counts))
                self._latencies_read_at = time.monotonic()
                pairs = reader.call_latencies()
                self.post_message(self.SessionsFetched(
                    latencies=percentiles_by_key(pairs), latency_ids=None))
        except StoreError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Reading the capture failed",
                                      severity="error")

    def poll(self) -> None:
        """Look for new sessions and fresh counts now (the timer calls this every second)."""
        self._poll_worker(self._live_ids(), max(self.sessions, default=0))

    def _live_ids(self) -> list[int]:
        if not self.sessions:
            return []
        newest = max((s["ended_at"] or s["started_at"]) for s in self.sessions.values())
        return [sid for sid, s in self.sessions.items()
                if (s["ended_at"] or s["started_at"]) >= newest - ACTIVE_WINDOW_SECONDS]

    @work(thread=True, exclusive=True, group="sessions-poll")
    def _poll_worker(self, live_ids: list[int], last_id: int) -> None:
        try:
            changed = self._watcher.changed()
            # Percentiles need every latency of a session; on a long live session that is too
            # much to re-read every poll: at most every few polls, and once after the last
            # change.
            latency_due = time.monotonic() - self._latencies_read_at >= self._latency_every
            if not changed and not (self._latencies_stale and latency_due):
                return
            with self.pool.reader() as reader:
                fetched = reader.session_rows(session_ids=live_ids) + reader.session_rows(
                    after_id=last_id)
                ids = [s["id"] for s in fetched]
                counts = with_zeros(reader.session_counts(ids), ids)
                latencies = None
                if latency_due:
                    self._latencies_read_at = time.monotonic()
                    latencies = percentiles_by_key(reader.call_latencies(ids))
                self._latencies_stale = latencies is None
        except StoreError:
            return  # a live capture can be briefly unreadable; the next tick tries again
        self.post_message(self.SessionsFetched(fetched, counts, latencies,
                                               ids if latencies is not None else None))

    def on_session_table_sessions_fetched(self, message: SessionsFetched) -> None:
        message.stop()
        for session in message.sessions:
            old = self.sessions.get(session["id"])
            if old is not None:
                session = {**old, **session}
            else:
                session.update(messages=None, requests=None, answered=None, pending=None,
                               flags=None, flag_errors=None, flag_warnings=None,
                               flag_infos=None, p50=None, p95=None, _latency_loaded=False)
            self.sessions[session["id"]] = session
        if message.counts is not None:
            for sid, counts in message.counts.items():
                if sid in self.sessions:
                    self.sessions[sid].update(counts)
            self.counts_loaded = True
        if message.latencies is not None:
            ids = message.latency_ids if message.latency_ids is not None else list(self.sessions)
            for sid in ids:
                if sid in self.sessions:
                    p50, p95 = message.latencies.get(sid, (None, None))
                    self.sessions[sid].update(p50=p50, p95=p95, _latency_loaded=True)
            if message.latency_ids is None:
                self.percentiles_loaded = True
        self._rebuild()

    # Sorting and filtering --------------------------------------------------------------------

    def action_sort_next(self) -> None:
        self.sort_by(COLUMN_KEYS[(COLUMN_KEYS.index(self.sort_key) + 1) % len(COLUMN_KEYS)])

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_key, reverse=not self.sort_reverse)

    def sort_by(self, key: str, *, reverse: bool = False) -> None:
        self.sort_key = key
        self.sort_reverse = reverse
        self._rebuild()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._rebuild()

    def shown_sessions(self) -> list[dict[str, Any]]:
        """The sessions as shown: filtered, then sorted (ties by id)."""
        return list(self._shown)

    def _sorted_and_filtered(self) -> list[dict[str, Any]]:
        column = next(c for c in COLUMNS if c.key == self.sort_key)
        shown = [s for s in self.sessions.values()
                 if not self.filter_text or self.filter_text in haystack(s)]
        shown.sort(key=lambda s: (column.sort_value(s), s["id"]), reverse=self.sort_reverse)
        return shown

    def _rebuild(self) -> None:
        current = self.current_session()
        self._shown = self._sorted_and_filtered()
        self._natural = natural_widths(self._shown)
        self._strips.clear()
        self.virtual_size = Size(self.size.width, len(self._shown) + 1)
        row = self.row_for_session(current["id"]) if current is not None else None
        self.set_reactive(SessionTable.cursor_row, min(row if row is not None else
                                                       self.cursor_row,
                                                       max(len(self._shown) - 1, 0)))
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.SessionsChanged(self, len(self.sessions), len(self._shown)))

    # Selection ---------------------------------------------------------------------------

    def row_for_session(self, session_id: int) -> int | None:
        for row, session in enumerate(self._shown):
            if session["id"] == session_id:
                return row
        return None

    def current_session(self) -> dict[str, Any] | None:
        if 0 <= self.cursor_row < len(self._shown):
            return self._shown[self.cursor_row]
        return None

    def move_cursor(self, *, row: int | None) -> None:
        if row is not None:
            self.cursor_row = row

    def validate_cursor_row(self, value: int) -> int:
        return max(0, min(value, len(self._shown) - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh_line(old + 1)
        self.refresh_line(new + 1)
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        rows = max(self.scrollable_content_region.height - 1, 1)  # less the header line
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + rows:
            self.scroll_to(y=self.cursor_row - rows + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        self.cursor_row += step

    def action_page(self, step: int) -> None:
        self.cursor_row += step * max(self.scrollable_content_region.height - 2, 1)

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        self.cursor_row = len(self._shown) - 1

    def action_select(self) -> None:
        session = self.current_session()
        if session is not None:
            self.post_message(self.SessionSelected(self, session))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:  # the header: sort by the column clicked
            x = 1
            for column, width in layout(self.scrollable_content_region.width, self._natural):
                if x <= offset.x < x + width + 1:
                    reverse = not self.sort_reverse if column.key == self.sort_key else False
                    self.sort_by(column.key, reverse=reverse)
                    return
                x += width + 1
            return
        row = int(self.scroll_offset.y) + offset.y - 1
        if row == self.cursor_row:
            self.action_select()
        elif row < len(self._shown):
            self.cursor_row = row

    # Rendering ----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            return self._header(width)
        row = int(self.scroll_offset.y) + y - 1
        if row >= len(self._shown):
            return Strip.blank(width, self.rich_style)
        session = self._shown[row]
        selected = row == self.cursor_row
        key = (int(session["id"]), width, selected)
        strip = self._strips.get(key)
        if strip is None:
            text = Text(" ")
            for column, column_width in layout(width, self._natural):
                cell = column.cell(session)
                cell = cell if isinstance(cell, Text) else Text(str(cell))
                cell.truncate(column_width, overflow="ellipsis")
                if column.right:
                    text.append(" " * (column_width - cell.cell_len))
                    text.append_text(cell)
                else:
                    text.append_text(cell)
                    text.append(" " * (column_width - cell.cell_len))
                text.append(" ")
            strip = self._strip(text, width, selected)
            self._strips[key] = strip
        self.painted_rows += 1
        self._painted.set()
        return strip

    def _header(self, width: int) -> Strip:
        text = Text(" ")
        header = self.get_component_rich_style("session-table--header", partial=True)
        sorted_style = self.get_component_rich_style("session-table--sorted", partial=True)
        for column, column_width in layout(width, self._natural):
            label = column.label
            if column.key == self.sort_key:
                label += " ▼" if self.sort_reverse else " ▲"
            style = sorted_style if column.key == self.sort_key else header
            padding = " " * max(column_width - len(label), 0)
            text.append(padding + label if column.right else label + padding, style)
            text.append(" ")
        return self._strip(text, width, False)

    def _strip(self, text: Text, width: int, selected: bool) -> Strip:
        text.truncate(width, overflow="ellipsis", pad=True)
        style = self.rich_style
        if selected:
            style = style + self.get_component_rich_style("session-table--cursor")
        return Strip(list(text.render(self.app.console)), text.cell_len).apply_style(
            style).crop_extend(0, width, style)
