"""One session: the timeline, the detail of the highlighted row, flags, search and filters."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

import orjson
from textual import events, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from recorder.model import C2S, S2C
from recorder.report import duration
from recorder.store import StoreError
from tui.filters import MESSAGE_KINDS, TimelineFilter
from tui.flag_index import FlagIndex
from tui.readers import ReaderPool
from tui.timeline_index import EXCHANGE, MESSAGE
from tui.widgets.detail_pane import DetailPane
from tui.widgets.flags_panel import FlagsPanel
from tui.widgets.timeline import Timeline

# Side by side from this width; stacked below it (80x24 gets the timeline over the detail).
WIDE_LAYOUT = 140
COUNTS_REFRESH_POLLS = 3  # live counts are re-read at most every this many polls


def _n(value: int | None) -> str:
    return "…" if value is None else f"{value:,}"


def session_title(session: dict[str, Any]) -> str:
    client = session.get("client_name") or "?"
    if session.get("client_version"):
        client += f" {session['client_version']}"
    server = session.get("server_name") or session["server"]
    if session.get("server_version"):
        server += f" {session['server_version']}"
    flags = session.get("flags")
    # Counts first: at 80 columns the end of the line is cut.
    return (f"Session {session['id']} · {_n(session.get('messages'))} msgs · "
            f"{_n(session.get('requests'))} calls · {_n(session.get('pending'))} pending · "
            f"{_n(flags)} flag{'' if flags == 1 else 's'} · "
            f"{duration(session['started_at'], session['ended_at'])} · {session['transport']} · "
            f"{client} → {server} · {session.get('protocol_version') or '?'}")


class SessionScreen(Screen[None]):
    """Timeline over detail (or beside it when wide), with a search bar on demand."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search"),
        Binding("n", "search_again(1)", "Next match", show=False),
        Binding("N", "search_again(-1)", "Previous match", show=False),
        Binding("f", "filter", "Filter"),
        Binding("d", "cycle_direction", "Direction", show=False),
        Binding("exclamation_mark", "toggle_flagged", "Flagged only", show=False),
        Binding("x", "clear_filter", "Clear filter", show=False),
        Binding("F", "flags", "Flags"),
        Binding("c", "charts", "Charts"),
        Binding("y", "copy", "Copy JSON"),
        Binding("tab", "toggle_focus", "Timeline/detail", show=False),
        Binding("1", "detail_tab(0)", "Detail: JSON", show=False),
        Binding("2", "detail_tab(1)", "Detail: HTTP headers", show=False),
        Binding("3", "detail_tab(2)", "Detail: raw SSE bytes", show=False),
        Binding("4", "detail_tab(3)", "Detail: the call", show=False),
        Binding("5", "detail_tab(4)", "Detail: flags", show=False),
        Binding("R", "replay", "Replay"),
    ]

    class MatchFound(Message):
        """Incremental search finished: the message found, or None."""

        def __init__(self, query: str, message_id: int | None, wrapped: bool) -> None:
            super().__init__()
            self.query = query
            self.message_id = message_id
            self.wrapped = wrapped

    class FlagsLoaded(Message):
        """The session's flags were read (again)."""

        def __init__(self, flags: list[dict[str, Any]], session: dict[str, Any] | None) -> None:
            super().__init__()
            self.flags = flags
            self.session = session

    def __init__(self, pool: ReaderPool, session: dict[str, Any], *,
                 gap_threshold: float | None, poll_interval: float | None) -> None:
        super().__init__()
        self.pool = pool
        self.session = session
        self.session_id = int(session["id"])
        self.gap_threshold = gap_threshold
        self.poll_interval = poll_interval
        self.filter = TimelineFilter()
        self.search_query = ""
        self._search_anchor: int | None = None  # cursor row when the search bar opened
        self._counts_read_at = 0.0
        self._counts_every = COUNTS_REFRESH_POLLS * (poll_interval or 1.0)
        self._counts_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(session_title(self.session), id="session-title", classes="title-bar")
        with Container(id="session-body"):
            with Vertical(id="timeline-pane"):
                yield Timeline(self.pool, self.session_id, self.session["started_at"],
                               gap_threshold=self.gap_threshold,
                               poll_interval=self.poll_interval, id="timeline")
                yield Static("indexing…", id="timeline-status", classes="status-bar")
            yield DetailPane(self.pool, self.session["started_at"], id="detail")
        yield Input(placeholder="search messages (JSON text or method) · Enter keeps, "
                    "Esc returns", id="search", classes="-hidden")
        yield Footer()

    @property
    def timeline(self) -> Timeline:
        return self.query_one(Timeline)

    @property
    def detail(self) -> DetailPane:
        return self.query_one(DetailPane)

    def on_mount(self) -> None:
        self.timeline.focus()
        self._load_flags()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width >= WIDE_LAYOUT, "-wide")

    # Data --------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="session-flags")
    def _load_flags(self, with_counts: bool = False) -> None:
        try:
            with self.pool.reader() as reader:
                flags = reader.flags(self.session_id)
                session = None
                if with_counts or self.session.get("messages") is None:
                    found = reader.session_rows(session_ids=[self.session_id])
                    counts = reader.session_counts([self.session_id]).get(self.session_id, {})
                    session = {**found[0], **counts} if found else None
        except StoreError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.post_message(self.FlagsLoaded(flags, session))

    def on_session_screen_flags_loaded(self, message: FlagsLoaded) -> None:
        index = FlagIndex.build(message.flags)
        self.timeline.flags = index
        self.timeline.refresh_rows()
        self.query_one(FlagsPanel).show_flags(message.flags)
        self.detail.set_flag_count(len(message.flags))
        if message.session is not None:
            self.session = {**self.session, **message.session}
            self.query_one("#session-title", Static).update(session_title(message.session))

    def on_timeline_row_highlighted(self, message: Timeline.RowHighlighted) -> None:
        self.detail.show_key(message.key)
        self._update_status()

    def on_timeline_row_selected(self, message: Timeline.RowSelected) -> None:
        self.detail.focus_content()

    def on_timeline_index_progressed(self, message: Timeline.IndexProgressed) -> None:
        self._update_status()
        if message.live:
            self._refresh_counts_soon()

    def _refresh_counts_soon(self) -> None:
        # Flags and counts move with a live recording. Counting a long session costs a pass
        # over its rows, so at most every few polls, with a trailing read after the last change.
        wait = self._counts_every - (time.monotonic() - self._counts_read_at)
        if wait <= 0:
            self._refresh_counts()
        elif self._counts_timer is None:
            self._counts_timer = self.set_timer(wait, self._refresh_counts)

    def _refresh_counts(self) -> None:
        self._counts_timer = None
        self._counts_read_at = time.monotonic()
        self._load_flags(with_counts=True)

    def _update_status(self) -> None:
        timeline = self.timeline
        rows = timeline.row_count
        where = f"row {timeline.cursor_row + 1:,} of {rows:,}" if rows else "no rows"
        if not timeline.index_complete:
            where += " (indexing…)"
        parts = [where]
        if self.filter.active:
            parts.append(f"filter: {self.filter.describe()}")
        if self.search_query:
            parts.append(f"search: {self.search_query!r}")
        if not self.filter.active and self.gap_threshold:
            parts.append(f"gaps ≥ {self.gap_threshold:g} s marked")
        self.query_one("#timeline-status", Static).update(" · ".join(parts))

    # Flags --------------------------------------------------------------------------------

    def on_flags_panel_flag_selected(self, message: FlagsPanel.FlagSelected) -> None:
        self.jump_to_flag(message.flag)

    def jump_to_flag(self, flag: dict[str, Any]) -> None:
        """Move the timeline to a flag's moment: its message, else its call's request, else
        its exchange (a flag about an HTTP exchange alone), else its time (a stream gap)."""
        timeline = self.timeline
        timeline.focus()
        index = timeline.index
        if flag.get("message_id") is not None and index.position_of(
                MESSAGE, flag["message_id"]) is not None:
            timeline.jump_to_key((MESSAGE, flag["message_id"]))
        elif flag.get("call_id") is not None:
            self._jump_to_call(flag["call_id"], flag["t"])
        elif flag.get("stream_id") is None and flag.get("exchange_id") is not None and \
                index.position_of(EXCHANGE, flag["exchange_id"]) is not None:
            timeline.jump_to_key((EXCHANGE, flag["exchange_id"]))
        else:
            timeline.jump_to_time(flag["t"])

    @work(thread=True, group="session-jump")
    def _jump_to_call(self, call_id: int, t: float) -> None:
        with self.pool.reader() as reader:
            call = reader.call(call_id)
        message_id = call.get("request_message_id") if call else None
        if message_id is not None:
            self.app.call_from_thread(self.timeline.jump_to_key, (MESSAGE, message_id))
        else:
            self.app.call_from_thread(self.timeline.jump_to_time, t)

    def action_flags(self) -> None:
        self.detail.show_flags()

    # Filters ------------------------------------------------------------------------------

    def apply_filter(self, timeline_filter: TimelineFilter) -> None:
        self.filter = timeline_filter
        self.timeline.set_filter(timeline_filter)
        self._update_status()

    def action_filter(self) -> None:
        from tui.screens.filter import FilterScreen

        def chosen(result: TimelineFilter | None) -> None:
            if result is not None:
                self.apply_filter(result)

        self.app.push_screen(FilterScreen(self.pool, self.session_id, self.filter), chosen)

    def action_cycle_direction(self) -> None:
        self.apply_filter(self.filter.with_direction_cycled())

    def action_toggle_flagged(self) -> None:
        self.apply_filter(replace(self.filter, flagged_only=not self.filter.flagged_only))

    def action_clear_filter(self) -> None:
        self.apply_filter(TimelineFilter())

    # Search -------------------------------------------------------------------------------

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        self._search_anchor = self.timeline.cursor_row
        box.remove_class("-hidden")
        box.value = self.search_query
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "search":
            return
        self.search_query = event.value
        if event.value and self._search_anchor is not None:
            # Incremental: every keystroke searches again from where the search began.
            anchor_id = self.timeline.index.message_near(self._search_anchor, -1)
            self._find(event.value, after_id=(anchor_id - 1) if anchor_id else 0)
        self._update_status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search":
            self._close_search(keep=True)

    def _close_search(self, *, keep: bool) -> None:
        box = self.query_one("#search", Input)
        box.add_class("-hidden")
        if not keep:
            self.search_query = ""
            if self._search_anchor is not None:
                self.timeline.cursor_row = self._search_anchor
        self._search_anchor = None
        self.timeline.focus()
        self._update_status()

    def action_search_again(self, step: int) -> None:
        if not self.search_query:
            self.action_search()
            return
        timeline = self.timeline
        if step > 0:
            current = timeline.index.message_near(timeline.cursor_row, -1)
            self._find(self.search_query, after_id=current or 0)
        else:
            current = timeline.index.message_near(timeline.cursor_row, 1)
            self._find(self.search_query, before_id=current or 2**62)

    @work(thread=True, exclusive=True, group="session-search")
    def _find(self, query: str, *, after_id: int | None = None,
              before_id: int | None = None) -> None:
        worker = get_current_worker()
        f = self.filter
        options: dict[str, Any] = {
            "methods": sorted(f.methods), "directions": sorted(f.directions),
            "kinds": f.message_kinds, "flagged_only": f.flagged_only,
            "should_stop": lambda: worker.is_cancelled}
        try:
            with self.pool.reader() as reader:
                found = reader.find_message(self.session_id, query, after_id=after_id,
                                            before_id=before_id, **options)
                wrapped = False
                if found is None and not worker.is_cancelled:
                    # Wrap around, as less and vim do.
                    wrapped = True
                    found = reader.find_message(
                        self.session_id, query, after_id=0 if before_id is None else None,
                        before_id=None if before_id is None else 2**62, **options)
        except StoreError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        if not worker.is_cancelled:
            self.post_message(self.MatchFound(query, found, wrapped))

    def on_session_screen_match_found(self, message: MatchFound) -> None:
        if message.query != self.search_query:
            return  # an answer to an older keystroke
        if message.message_id is None:
            self.notify(f"No message matches {message.query!r}", timeout=2)
            return
        if message.wrapped:
            self.notify("Search wrapped around", timeout=1.5)
        self.timeline.jump_to_key((MESSAGE, message.message_id))

    # Other actions ----------------------------------------------------------------------------

    def action_back(self) -> None:
        """Escape steps back one level: search bar, then detail pane, then the sessions."""
        if self.query_one("#search", Input).has_focus:
            self._close_search(keep=False)
        elif not self.timeline.has_focus:
            self.timeline.focus()
        else:
            self.app.pop_screen()

    def action_toggle_focus(self) -> None:
        if self.timeline.has_focus:
            self.detail.focus_content()
        else:
            self.timeline.focus()

    def action_detail_tab(self, number: int) -> None:
        self.detail.show_tab(DetailPane.TABS[number])

    def action_charts(self) -> None:
        from tui.screens.charts import ChartsScreen

        self.app.push_screen(ChartsScreen(self.pool, self.session,
                                          gap_threshold=self.gap_threshold))

    def action_copy(self) -> None:
        key = self.timeline.current_key()
        if key is None:
            return
        self._copy(key)

    @work(thread=True, group="session-copy")
    def _copy(self, key: tuple[int, int]) -> None:
        source, row_id = key
        text: str | None = None
        if source == MESSAGE:
            with self.pool.reader() as reader:
                message = reader.message(row_id)
            if message and message.get("json"):
                try:
                    text = orjson.dumps(orjson.loads(message["json"]),
                                        option=orjson.OPT_INDENT_2).decode()
                except orjson.JSONDecodeError:
                    text = message["json"]
        if text is None:
            self.app.call_from_thread(self.notify, "Only JSON-RPC messages can be copied as JSON",
                                      severity="warning", timeout=2)
            return
        self.app.call_from_thread(self._copied, text, row_id)

    def _copied(self, text: str, message_id: int) -> None:
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied message {message_id} as JSON ({len(text):,} characters)",
                    timeout=2)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The replay seam: the key and its footer entry exist only once a replay launcher is
        # plugged in (False hides a binding; None would show it disabled).
        if action == "replay":
            return getattr(self.app, "replay", None) is not None
        return True

    def action_replay(self) -> None:
        replay = getattr(self.app, "replay", None)
        if replay is not None:
            self.app.push_screen(replay.screen_for(self.pool.path, self.session_id))

    def palette_commands(self) -> Iterable[SystemCommand]:
        f = self.filter
        yield SystemCommand("Search messages", "Incremental search in JSON and methods",
                            self.action_search)
        yield SystemCommand("Filter timeline…", "Method, direction, kind, flagged only",
                            self.action_filter)
        yield SystemCommand("Show only client → server", "Direction filter",
                            partial(self.apply_filter, replace(f, directions=frozenset({C2S}))))
        yield SystemCommand("Show only server → client", "Direction filter",
                            partial(self.apply_filter, replace(f, directions=frozenset({S2C}))))
        yield SystemCommand("Toggle flagged rows only", "Only rows that carry a flag",
                            self.action_toggle_flagged)
        yield SystemCommand("Show only JSON-RPC messages", "Hide HTTP, stream and SSE rows",
                            partial(self.apply_filter, replace(f, kinds=frozenset(MESSAGE_KINDS))))
        yield SystemCommand("Clear filters", "Show every row", self.action_clear_filter)
        yield SystemCommand("Show flags", "The session's flags panel", self.action_flags)
        yield SystemCommand("Show charts", "Latency per method and stream gaps",
                            self.action_charts)
        yield SystemCommand("Copy message as JSON", "The highlighted message, pretty-printed",
                            self.action_copy)
        yield SystemCommand("Jump request ↔ response", "The other end of the call",
                            self.timeline.action_follow_link)
        yield SystemCommand("Next gap", "The next silence in the timeline",
                            partial(self.timeline.action_next_gap, 1))
        if getattr(self.app, "replay", None) is not None:
            yield SystemCommand("Replay this session", "Against a live server, with the diff",
                                self.action_replay)
        for seconds in (0.5, 1.0, 2.0, 5.0, 15.0, 60.0):
            yield SystemCommand(f"Mark gaps of {seconds:g} s or more",
                                "Silences this long get a row of their own",
                                partial(self._set_gap_threshold, seconds))

    def _set_gap_threshold(self, seconds: float) -> None:
        self.gap_threshold = seconds
        self.timeline.set_gap_threshold(seconds)
        self._update_status()

