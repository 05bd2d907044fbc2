"""The replay launcher the browser plugs into its seam (`tui.replay_seam.ReplayLauncher`).

`ssetap browse` uses it by default (`run_browser`); `create_app(replay=None)` leaves it out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.screen import Screen

from recorder.store import BrowseReader, StoreError


def recorded_target(session: dict[str, Any] | None) -> str:
    """The MCP endpoint the session was recorded against (server + endpoint), or ""."""
    if not session or not session.get("server"):
        return ""
    return f"{session['server']}{session.get('endpoint') or ''}"


class ReplayScreenLauncher:
    """Builds the replay screen for a session; the target starts as the recorded server."""

    def screen_for(self, db_path: Path, session_id: int) -> Screen[None]:
        from tui.screens.replay import ReplayScreen

        try:
            with BrowseReader(db_path) as reader:  # one row by primary key
                session = reader.session(session_id)
        except StoreError:
            session = None
        return ReplayScreen(db_path, session_id, target=recorded_target(session))
