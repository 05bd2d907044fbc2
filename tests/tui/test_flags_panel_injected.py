"""The flags panel tells flags caused by `record --fault` from natural ones."""

from __future__ import annotations

import orjson
from textual.app import App, ComposeResult

from tui.widgets.flags_panel import FlagsPanel


class PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        yield FlagsPanel(100.0, id="flags")


async def test_injected_flags_are_marked() -> None:
    app = PanelApp()
    async with app.run_test(size=(120, 10)) as pilot:
        panel = app.query_one(FlagsPanel)
        injected = {"injected": {"spec": "cut-stream=3", "action": "cut", "injection": 1}}
        panel.show_flags([
            {"t": 101.0, "kind": "stream-truncated", "severity": "warning",
             "message": "stream closed mid-event", "details": orjson.dumps(injected).decode()},
            {"t": 102.0, "kind": "heartbeat-missing", "severity": "warning",
             "message": "no heartbeat for 40 s", "details": None},
        ])
        await pilot.pause()
        first = [str(cell) for cell in panel.get_row_at(0)]
        second = [str(cell) for cell in panel.get_row_at(1)]
        assert first[2] == "stream-truncated injected"
        assert first[3].endswith("[injected: cut-stream=3]")
        assert second[2] == "heartbeat-missing" and "injected" not in second[3]
