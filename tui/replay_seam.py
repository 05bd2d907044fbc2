"""Where replay plugs into the browser (the replay issue implements this; nothing here runs it).

A launcher given to `tui.app.create_app(replay=...)` turns on the session screen's `R` key and
its palette entry; without one, neither is shown. The launcher builds the screen that replays
the session against a live server and shows the diff; the TUI only pushes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from textual.screen import Screen


class ReplayLauncher(Protocol):
    def screen_for(self, db_path: Path, session_id: int) -> Screen[None]:
        """A screen that replays `session_id` of the capture at `db_path` and shows the diff."""
        ...
