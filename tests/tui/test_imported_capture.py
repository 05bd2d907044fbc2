"""`ssetap browse` reads an imported capture like a recorded one (a sample capture, exported
as HAR and imported back)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder.cli import main as ssetap
from recorder.store import Capture
from tui.app import create_app
from tui.screens.session import SessionScreen
from tui.widgets.session_table import SessionTable

SAMPLES = Path(__file__).resolve().parents[2] / "sample_captures"


async def test_browse_opens_an_imported_capture(tmp_path: Path,
                                                settle: Callable[..., Any]) -> None:
    har = tmp_path / "s.har"
    db = tmp_path / "s.db"
    assert ssetap(["export", str(SAMPLES / "legacy-sse.db"), "--format", "har", "-o", str(har),
                   "--quiet"]) == 0
    assert ssetap(["import", str(har), "--db", str(db)]) == 0
    with Capture(db) as capture:
        sessions = capture.sessions()
    app = create_app(db, poll_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SessionTable)
        assert table.row_count == len(sessions) >= 1
        assert table.sessions[sessions[0]["id"]]["messages"] == sessions[0]["messages"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SessionScreen)
