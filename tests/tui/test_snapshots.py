"""Snapshots of the main screens on the sample captures and the story capture.

Update after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`,
then look at the SVGs in `__snapshots__/` before committing them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.app import create_app

Story = tuple[Path, dict[str, Any]]


def settled(settle: Callable[..., Any], *keys: str) -> Callable[[Any], Any]:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        if keys:
            await pilot.press(*keys)
            await settle(pilot)

    return run_before


def test_sessions_screen(snap_compare: Any, sample: Callable[[str], Path],
                         settle: Callable[..., Any]) -> None:
    app = create_app(sample("streamable-sse.db"), poll_interval=None)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled(settle))


def test_session_screen_at_80x24_on_the_gap(snap_compare: Any, story: Story,
                                            settle: Callable[..., Any]) -> None:
    app = create_app(story[0], session_id=1, poll_interval=None)
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=settled(settle, "right_square_bracket"))


def test_session_screen_wide_with_raw_bytes(snap_compare: Any, sample: Callable[[str], Path],
                                            settle: Callable[..., Any]) -> None:
    app = create_app(sample("legacy-sse.db"), session_id=1, poll_interval=None)
    assert snap_compare(app, terminal_size=(160, 40),
                        run_before=settled(settle, "slash", *"liftoff", "enter", "3"))


def test_charts_screen(snap_compare: Any, story: Story, settle: Callable[..., Any]) -> None:
    app = create_app(story[0], session_id=1, poll_interval=None)
    assert snap_compare(app, terminal_size=(100, 30), run_before=settled(settle, "c"))
