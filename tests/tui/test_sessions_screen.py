"""The sessions screen: the table, its counts, sorting, filtering and opening a session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.widgets import Input, Static

from tui.app import create_app
from tui.screens.session import SessionScreen
from tui.widgets.session_table import SessionTable

Story = tuple[Path, dict[str, Any]]


async def test_table_lists_every_session_with_counts_and_latency(
        story: Story, settle: Callable[..., Any], plain: Callable[..., str]) -> None:
    app = create_app(story[0], poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SessionTable)
        assert table.row_count == 2
        assert table.counts_loaded and table.percentiles_loaded
        first = table.sessions[1]
        assert (first["messages"], first["requests"], first["pending"]) == (17, 7, 0)
        assert (first["flag_errors"], first["flag_warnings"], first["flag_infos"]) == (1, 1, 1)
        assert first["p50"] == 20.0 and first["p95"] == 150.0
        status = plain(app.screen.query_one("#sessions-status", Static))
        assert "2 sessions · 21 messages" in status


async def test_sort_and_filter(story: Story, settle: Callable[..., Any]) -> None:
    app = create_app(story[0], poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SessionTable)
        await pilot.press("s")  # by client: other-client before story-client
        assert table.sort_key == "client"
        assert [s["id"] for s in table.shown_sessions()] == [2, 1]
        assert table.current_session()["id"] == 1  # type: ignore[index]  # the cursor stays
        await pilot.press("S")
        assert table.sort_reverse and [s["id"] for s in table.shown_sessions()] == [1, 2]
        await pilot.click(SessionTable, offset=(2, 0))  # the "#" header
        assert table.sort_key == "id" and not table.sort_reverse
        await pilot.press("slash", *"other")
        assert app.screen.query_one("#session-filter", Input).has_focus
        assert table.row_count == 1 and table.current_session()["id"] == 2  # type: ignore[index]
        await pilot.press("escape")
        assert table.row_count == 2
        assert app.screen.query_one("#session-filter").has_class("-hidden")


async def test_enter_opens_the_session_and_posts_session_selected(
        story: Story, settle: Callable[..., Any], messages: list[Any]) -> None:
    app = create_app(story[0], poll_interval=None)
    async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        selected = messages.of(SessionTable.SessionSelected)
        assert [m.session_id for m in selected] == [2]
        assert isinstance(app.screen, SessionScreen) and app.screen.session_id == 2
        await pilot.press("escape")
        assert not isinstance(app.screen, SessionScreen)


async def test_app_can_open_straight_into_a_session(story: Story,
                                                    settle: Callable[..., Any]) -> None:
    app = create_app(story[0], session_id=1, poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, SessionScreen) and app.screen.session_id == 1
