"""The session screen: timeline navigation, links, filters, search, flags, detail, copy, charts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from textual.screen import Screen
from textual.widgets import Input, Static, TabbedContent

from recorder.store import BrowseReader
from tui.app import create_app
from tui.screens.charts import ChartsScreen
from tui.screens.filter import FilterScreen
from tui.screens.help import HelpScreen
from tui.screens.session import SessionScreen
from tui.timeline_index import EXCHANGE, GAP, MESSAGE, STREAM_OPEN
from tui.widgets.detail_pane import DetailPane
from tui.widgets.flags_panel import FlagsPanel
from tui.widgets.gap_chart import GapChart
from tui.widgets.json_tree import JsonTree
from tui.widgets.latency_chart import LatencyChart
from tui.widgets.timeline import Timeline

Story = tuple[Path, dict[str, Any]]


def opened(story: Story, **options: Any) -> Any:
    return create_app(story[0], session_id=1, poll_interval=None, **options)


def timeline_of(app: Any) -> Timeline:
    return app.screen.query_one(Timeline)


def message_rows(timeline: Timeline, path: Path) -> list[dict[str, Any]]:
    ids = [timeline.index.ids[i] for i in range(timeline.row_count)
           if timeline.index.sources[i] == MESSAGE]
    with BrowseReader(path) as reader:
        return reader.message_rows(ids)


async def test_opening_then_keys_move_the_cursor_and_the_detail_follows(
        story: Story, settle: Callable[..., Any], plain: Callable[..., str],
        messages: Any) -> None:
    app = opened(story)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        timeline = timeline_of(app)
        assert timeline.has_focus and timeline.index_complete
        assert timeline.current_key() == (EXCHANGE, 1)
        entry = timeline.current_entry()
        assert entry is not None and entry.text.startswith("POST /mcp")
        detail = app.screen.query_one(DetailPane)
        assert detail.detail is not None and detail.detail.key == (EXCHANGE, 1)
        title = plain(app.screen.query_one("#session-title", Static), 200)
        assert title.startswith("Session 1 · 17 msgs · 7 calls · 0 pending · 3 flags")
        await pilot.press("j")
        await settle(pilot)
        assert timeline.cursor_row == 1
        assert timeline.current_key() == (MESSAGE, 1)
        assert detail.detail is not None and detail.detail.payload["method"] == "initialize"
        await pilot.press("G")
        assert timeline.cursor_row == timeline.row_count - 1
        assert timeline.scroll_offset.y > 0  # the last row scrolled into view
        await pilot.press("g", "pagedown")
        assert timeline.cursor_row == timeline.scrollable_content_region.height - 1
        await settle(pilot)
        highlighted = messages.of(Timeline.RowHighlighted)
        assert highlighted and highlighted[-1].position == timeline.cursor_row


async def test_o_follows_a_request_to_its_response_and_back_and_progress_to_its_call(
        story: Story, settle: Callable[..., Any], messages: Any,
        plain: Callable[..., str]) -> None:
    _, ids = story
    app = opened(story)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        timeline = timeline_of(app)
        timeline.jump_to_key((MESSAGE, ids["countdown_request"]))
        await settle(pilot)
        await pilot.press("o")
        assert timeline.current_key() == (MESSAGE, ids["countdown_response"])
        await settle(pilot)
        await pilot.press("o")
        assert timeline.current_key() == (MESSAGE, ids["countdown_request"])
        followed = messages.of(Timeline.LinkFollowed)
        assert [(m.origin[1], m.target[1]) for m in followed] == [
            (ids["countdown_request"], ids["countdown_response"]),
            (ids["countdown_response"], ids["countdown_request"])]
        # Progress sits with its call: nested under it, listed in the Call tab, linked back.
        await pilot.press("j", "j")  # past the POST stream's open, onto the first progress
        await settle(pilot)
        entry = timeline.current_entry()
        assert entry is not None and entry.badge == "PROG" and entry.text.startswith("↳ #2")
        await pilot.press("4")
        call_view = plain(app.screen.query_one("#call-view", Static))
        assert "tools/call countdown" in call_view and "2 progress notifications" in call_view
        await pilot.press("o")
        assert timeline.current_key() == (MESSAGE, ids["countdown_request"])


async def test_filters_by_key_and_by_dialog(story: Story, settle: Callable[..., Any],
                                            plain: Callable[..., str]) -> None:
    path, ids = story
    app = opened(story)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        timeline = timeline_of(app)
        everything = timeline.row_count
        await pilot.press("d")
        await settle(pilot)
        assert 0 < timeline.row_count < everything
        assert {r["direction"] for r in message_rows(timeline, path)} == {"c2s"}
        assert GAP not in set(timeline.index.sources)
        await pilot.press("d")
        await settle(pilot)
        assert {r["direction"] for r in message_rows(timeline, path)} == {"s2c"}
        await pilot.press("x", "exclamation_mark")
        await settle(pilot)
        keys = {timeline.index.key(i) for i in range(timeline.row_count)}
        assert (MESSAGE, ids["error_message"]) in keys and (STREAM_OPEN, ids["get_stream"]) in keys
        assert len(keys) < 10
        assert "filter: flagged" in plain(app.screen.query_one("#timeline-status", Static))
        await pilot.press("x", "f")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, FilterScreen)
        methods = dialog.query_one("#filter-methods")
        values = [methods.get_option_at_index(i).value for i in range(methods.option_count)]
        assert "ping" in values and "tools/call" in values
        methods.select("ping")  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, SessionScreen) and app.screen.filter.methods == {"ping"}
        rows = message_rows(timeline_of(app), path)
        assert [(r["kind"], r["rpc_id"]) for r in rows] == [("request", "6"), ("result", "6")]


async def test_incremental_search_and_next_match(story: Story, settle: Callable[..., Any],
                                                 messages: Any) -> None:
    _, ids = story
    app = opened(story)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        timeline = timeline_of(app)
        await pilot.press("slash", *"lif")
        await settle(pilot)
        assert app.screen.query_one("#search", Input).has_focus
        assert timeline.current_key() == (MESSAGE, ids["countdown_response"])
        await pilot.press("enter")
        assert timeline.has_focus and app.screen.query_one("#search").has_class("-hidden")
        found = messages.of(SessionScreen.MatchFound)
        assert found[-1].query == "lif" and found[-1].message_id == ids["countdown_response"]
        # n: the next message mentioning tools/call after the cursor
        app.screen.search_query = "tools/call"
        await pilot.press("n")
        await settle(pilot)
        entry = timeline.current_entry()
        assert entry is not None and entry.badge == "REQ" and "echo" in entry.text
        await pilot.press("N")
        await settle(pilot)
        assert timeline.current_entry().key[1] < entry.key[1]  # type: ignore[union-attr]
        # Escape gives up a search: back to the row where it began.
        start = timeline.cursor_row
        await pilot.press("slash", *"ping")
        await settle(pilot)
        assert timeline.cursor_row != start
        await pilot.press("escape")
        assert timeline.cursor_row == start and timeline.has_focus


async def test_flags_panel_jumps_to_the_moment(story: Story, settle: Callable[..., Any],
                                               messages: Any) -> None:
    _, ids = story
    app = opened(story)
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await settle(pilot)
        await pilot.press("F")
        panel = app.screen.query_one(FlagsPanel)
        assert panel.has_focus and panel.row_count == 3
        assert app.screen.query_one(TabbedContent).active == "tab-flags"
        await pilot.press("enter")  # the error flag comes first (earliest)
        await settle(pilot)
        timeline = timeline_of(app)
        assert timeline.has_focus
        assert timeline.current_key() == (MESSAGE, ids["error_message"])
        selected = messages.of(FlagsPanel.FlagSelected)
        assert selected[-1].flag["kind"] == "error-response"
        # The cancelled flag names only a call: its request.
        await pilot.press("F", "down", "down", "enter")
        await settle(pilot)
        entry = timeline.current_entry()
        assert entry is not None and entry.badge == "REQ" and "slow" in entry.text
        # The gap flag names a stream and a time: the moment the silence began.
        await pilot.press("F", "up", "enter")
        await settle(pilot)
        flag = messages.of(FlagsPanel.FlagSelected)[-1].flag
        assert flag["kind"] == "stream-gap"
        assert abs(timeline.index.times[timeline.cursor_row] - flag["t"]) < 0.01


async def test_flagged_rows_carry_a_marker_and_gaps_a_row(story: Story, settle: Callable[..., Any]) -> None:
    _, ids = story
    app = opened(story)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        timeline = timeline_of(app)
        timeline.jump_to_key((MESSAGE, ids["error_message"]))
        await settle(pilot)
        line = timeline.render_line(timeline.cursor_row - int(timeline.scroll_offset.y))
        assert line.text.startswith("▌")
        assert "ERR" in line.text and "-32002" in line.text
        await pilot.press("g", "right_square_bracket")  # the next gap
        assert timeline.current_key() == (GAP, 12_000)
        line = timeline.render_line(timeline.cursor_row - int(timeline.scroll_offset.y))
        assert "12.0 s of silence" in line.text


async def test_detail_tabs_and_copying_a_message_as_json(story: Story,
                                                           settle: Callable[..., Any], plain: Callable[..., str]) -> None:
    _, ids = story
    app = opened(story)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        timeline_of(app).jump_to_key((MESSAGE, ids["countdown_response"]))
        await settle(pilot)
        tree = app.screen.query_one(JsonTree)
        assert tree.root.data["result"]["content"][0]["text"] == "liftoff"
        await pilot.press("3")
        raw = plain(app.screen.query_one("#bytes-view", Static))
        assert "event: message␍␊" in raw and '"liftoff"' in raw
        await pilot.press("2")
        http = plain(app.screen.query_one("#http-view", Static))
        assert "Authorization" in http and "sk-test-secret" not in http
        assert "redacted" in http
        await pilot.press("y")
        await settle(pilot)
        copied = orjson.loads(app.clipboard)
        assert copied["id"] == 2 and copied["result"]["content"][0]["text"] == "liftoff"
        assert "\n  " in app.clipboard  # pretty-printed


async def test_charts_screen(story: Story, settle: Callable[..., Any]) -> None:
    app = opened(story)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ChartsScreen)
        latency = app.screen.query_one(LatencyChart)
        labels = [d.label for d in latency.distributions or []]
        assert "tools/call countdown" in labels and "ping" in labels
        gaps = app.screen.query_one(GapChart)
        assert gaps.series is not None and gaps.series.worst_ms == pytest.approx(13_000, 1)
        await pilot.press("m")
        assert "tools/call" in [d.label for d in latency.distributions or []]
        await pilot.press("escape")
        assert isinstance(app.screen, SessionScreen)


async def test_help_lists_every_key_and_the_palette_every_action(story: Story, settle: Callable[..., Any], plain: Callable[..., str]) -> None:
    app = opened(story)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = plain(app.screen.query_one("#help-table", Static))
        for cls in (SessionScreen, Timeline):
            for binding in cls.BINDINGS:
                assert binding.description in shown, binding  # type: ignore[union-attr]
        await pilot.press("escape")
        assert isinstance(app.screen, SessionScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Copy message as JSON", "Show charts", "Jump request ↔ response",
                      "Toggle flagged rows only", "Keys"):
            assert title in titles
        command = next(c for c in app.get_system_commands(app.screen)
                       if c.title == "Show only client → server")
        command.callback()
        await settle(pilot)
        assert app.screen.filter.directions == {"c2s"}


class FakeReplay:
    def __init__(self) -> None:
        self.asked: list[tuple[Path, int]] = []

    def screen_for(self, db_path: Path, session_id: int) -> Screen[None]:
        self.asked.append((db_path, session_id))
        return Screen()


async def test_replay_key_appears_only_with_a_launcher(story: Story,
                                                       settle: Callable[..., Any]) -> None:
    app = opened(story)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.check_action("replay", ()) is False
        await pilot.press("R")
        assert isinstance(app.screen, SessionScreen)
        launcher = FakeReplay()
        app.replay = launcher  # what create_app(replay=...) sets
        assert app.screen.check_action("replay", ()) is True
        assert "Replay this session" in [c.title for c in app.get_system_commands(app.screen)]
        await pilot.press("R")
        assert launcher.asked == [(story[0], 1)] and not isinstance(app.screen, SessionScreen)
