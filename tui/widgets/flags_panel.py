"""The session's flags with their explanations; Enter jumps the timeline to the moment."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from recorder.faults import injected_spec
from recorder.model import severity_rank
from tui.rows import format_offset

SEVERITY_STYLES = {"error": "bold red", "warning": "bold yellow", "info": "bold blue"}


class FlagsPanel(DataTable[Any]):
    """One row per flag, in time order, so the flags read as the story of the session."""

    class FlagSelected(Message):
        """A flag was chosen: the screen moves the timeline to it."""

        def __init__(self, panel: FlagsPanel, flag: dict[str, Any]) -> None:
            super().__init__()
            self.panel = panel
            self.flag = flag

    def __init__(self, started_at: float, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.started_at = started_at
        self.flags: list[dict[str, Any]] = []

    def on_mount(self) -> None:
        self.add_column("sev", key="severity")
        self.add_column("at", key="at")
        self.add_column("kind", key="kind")
        self.add_column("what happened", key="message")

    def show_flags(self, flags: list[dict[str, Any]]) -> None:
        keep = self.cursor_row
        self.flags = list(flags)
        self.clear()
        for number, flag in enumerate(self.flags):
            severity = flag["severity"]
            kind = Text(flag["kind"])
            spec = injected_spec(flag.get("details"))
            if spec is not None:  # caused by `record --fault`: not a natural fault
                kind.append(" injected", style="italic magenta")
            self.add_row(Text(severity[:4], style=SEVERITY_STYLES.get(severity, "")),
                         Text(format_offset(flag["t"] - self.started_at), style="dim"),
                         kind, flag["message"] + (f" [injected: {spec}]" if spec else ""),
                         key=str(number))
        if not self.flags:
            self.add_row("", "", Text("no flags", style="dim"), "")
        elif keep < len(self.flags):
            self.move_cursor(row=keep)

    def worst(self) -> str | None:
        found = max((f["severity"] for f in self.flags), key=severity_rank, default=None)
        return found

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.flags and 0 <= event.cursor_row < len(self.flags):
            self.post_message(self.FlagSelected(self, self.flags[event.cursor_row]))
