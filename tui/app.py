"""The ssetap browser: a Textual app over one capture, built by `create_app` (CLI and tests).

Screens: sessions (the first) -> session (timeline, detail, flags) -> charts; modal filter and
help screens. All reads go through a pool of read-only store connections in worker threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from recorder.store import BrowseReader, StoreError
from tui.readers import ReaderPool
from tui.replay_seam import ReplayLauncher
from tui.screens.help import HelpScreen
from tui.screens.session import SessionScreen
from tui.screens.sessions import SessionsScreen
from tui.widgets.session_table import SessionTable

DEFAULT_GAP_SECONDS = 2.0


class SsetapApp(App[int]):
    """Browse the sessions of a capture, live while a recorder writes it."""

    CSS_PATH = "app.tcss"
    TITLE = "ssetap"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Keys"),
    ]

    def __init__(self, db_path: str | Path, *, session_id: int | None = None,
                 gap_threshold: float | None = DEFAULT_GAP_SECONDS,
                 poll_interval: float | None = 1.0, replay: ReplayLauncher | None = None) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.pool = ReaderPool(self.db_path)
        self.initial_session_id = session_id
        self.gap_threshold = gap_threshold
        self.poll_interval = poll_interval
        self.replay = replay

    def on_mount(self) -> None:
        self.push_screen(SessionsScreen(self.pool, poll_interval=self.poll_interval))
        if self.initial_session_id is not None:
            # The row only (an index lookup); the session screen reads its counts in a worker.
            with self.pool.reader() as reader:
                found = reader.session_rows(session_ids=[self.initial_session_id])
            if found:
                self.open_session(found[0])

    def on_unmount(self) -> None:
        self.pool.close()

    def on_session_table_session_selected(self, message: SessionTable.SessionSelected) -> None:
        self.open_session(message.session)

    def open_session(self, session: dict[str, Any]) -> None:
        self.push_screen(SessionScreen(self.pool, session, gap_threshold=self.gap_threshold,
                                       poll_interval=self.poll_interval))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(help_sections(type(self)), HELP_EXTRA))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Keys", "Every key of the browser", self.action_help)
        commands = getattr(screen, "palette_commands", None)
        if commands is not None:
            yield from commands()


def help_sections(app_class: type[App[Any]]) -> list[tuple[str, list[type[Any]]]]:
    from tui.screens.charts import ChartsScreen
    from tui.screens.filter import FilterScreen
    from tui.screens.replay import ReplayScreen
    from tui.widgets.json_tree import JsonTree
    from tui.widgets.timeline import Timeline

    return [
        ("Everywhere", [app_class]),
        ("Sessions", [SessionsScreen, SessionTable]),
        ("Session", [SessionScreen, Timeline]),
        ("Detail pane", [JsonTree]),
        ("Charts", [ChartsScreen]),
        ("Filter dialog", [FilterScreen]),
        ("Replay (R in a session)", [ReplayScreen]),
    ]


HELP_EXTRA = [
    ("Everywhere", "^p", "command palette (every action, searchable)"),
    ("Detail pane", "↑ ↓ space", "move in the JSON tree, fold and unfold"),
    ("Detail pane", "F (in session)", "flags panel; enter jumps to the flag's moment"),
]


def check_capture(db_path: str | Path, session_id: int | None = None) -> None:
    """Raise StoreError, with a one-line message, unless the file is a readable capture
    (and has the session, when one is named). Run before the app takes over the terminal."""
    with BrowseReader(db_path) as reader:
        reader.sessions(limit=1)
        if session_id is not None and reader.session(session_id) is None:
            raise StoreError(f"{db_path}: no session {session_id} in this capture")


def create_app(db_path: str | Path, session_id: int | None = None, *,
               gap_threshold: float | None = DEFAULT_GAP_SECONDS,
               poll_interval: float | None = 1.0,
               replay: ReplayLauncher | None = None) -> SsetapApp:
    """The app factory the CLI and the tests share."""
    return SsetapApp(db_path, session_id=session_id, gap_threshold=gap_threshold,
                     poll_interval=poll_interval, replay=replay)


def default_replay() -> ReplayLauncher:
    """The launcher `ssetap browse` plugs in: `R` in a session replays it against a server."""
    from tui.replay_launcher import ReplayScreenLauncher

    return ReplayScreenLauncher()


def run_browser(db_path: str | Path, session_id: int | None = None, *,
                gap_threshold: float | None = DEFAULT_GAP_SECONDS,
                replay: ReplayLauncher | None | Literal["default"] = "default") -> int:
    """Check the capture, then run the browser in the terminal until the user quits.

    `replay` is the replay launcher: the real one by default, None for none.

    Raises StoreError for a missing, empty, corrupt or foreign file (before any screen is
    drawn), which `ssetap` reports in one line with exit code 2.
    """
    check_capture(db_path, session_id)
    launcher = default_replay() if replay == "default" else replay
    app = create_app(db_path, session_id, gap_threshold=gap_threshold, replay=launcher)
    app.run()
    return app.return_code or 0
