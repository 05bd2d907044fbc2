"""The first screen: every session of the capture, live."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from recorder.report import iso
from tui.readers import ReaderPool
from tui.session_columns import COLUMNS
from tui.widgets.session_table import SessionTable


class SessionsScreen(Screen[None]):
    """Sessions table with a filter box and a status line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, pool: ReaderPool, *, poll_interval: float | None) -> None:
        super().__init__()
        self.pool = pool
        self.poll_interval = poll_interval

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="capture-title", classes="title-bar")
        yield SessionTable(self.pool, poll_interval=self.poll_interval, id="sessions")
        yield Input(placeholder="filter sessions: client, server, transport, key…",
                    id="session-filter", classes="-hidden")
        yield Static("reading sessions…", id="sessions-status", classes="status-bar")
        yield Footer()

    def _title(self) -> str:
        return f"ssetap · {self.pool.path.name}"

    def on_mount(self) -> None:
        self.query_one(SessionTable).focus()

    def on_screen_suspend(self) -> None:
        self.query_one(SessionTable).stop_waiting_for_paint()

    def _recording(self) -> bool:
        # The store's single-writer lock file exists exactly while a recorder holds it.
        return Path(f"{self.pool.path}.lock").exists()

    def on_session_table_sessions_changed(self, message: SessionTable.SessionsChanged) -> None:
        table = message.table
        messages = sum(s["messages"] or 0 for s in table.sessions.values())
        shown = (f"{message.shown} of {message.total} sessions" if message.shown != message.total
                 else f"{message.total} session{'s' if message.total != 1 else ''}")
        live = "  ● recording" if self._recording() else ""
        filtered = f"  filter: {table.filter_text!r}" if table.filter_text else ""
        self.query_one("#sessions-status", Static).update(
            f"{shown} · {messages:,} messages · sorted by {table.sort_key}"
            f"{' (reversed)' if table.sort_reverse else ''}{filtered}{live}")

    def action_filter(self) -> None:
        box = self.query_one("#session-filter", Input)
        box.remove_class("-hidden")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#session-filter", Input)
        box.value = ""
        box.add_class("-hidden")
        self.query_one(SessionTable).focus()

    def action_refresh(self) -> None:
        self.query_one(SessionTable).poll()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "session-filter":
            self.query_one(SessionTable).set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "session-filter":
            if not event.value:
                event.input.add_class("-hidden")
            self.query_one(SessionTable).focus()

    def _open(self, session: dict[str, Any]) -> None:
        table = self.query_one(SessionTable)
        table.post_message(SessionTable.SessionSelected(table, session))

    def palette_commands(self) -> Iterable[SystemCommand]:
        table = self.query_one(SessionTable)
        for session in table.shown_sessions()[:200]:
            yield SystemCommand(
                f"Open session {session['id']}: {session.get('client_name') or '?'} "
                f"({session['transport']})", f"{session['messages'] or 0:,} messages, started "
                f"{iso(session['started_at'])}", partial(self._open, session))
        for column in COLUMNS:
            yield SystemCommand(f"Sort sessions by {column.label}",
                                "Sort the sessions table by this column",
                                partial(table.sort_by, column.key))
        yield SystemCommand("Filter sessions", "Type to filter the sessions table",
                            self.action_filter)
