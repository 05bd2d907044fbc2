"""Every key of the app, read from the bindings themselves so the list cannot go stale."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import Static

HelpSection = tuple[str, Sequence[type[DOMNode]]]


def _bindings(classes: Iterable[type[DOMNode]]) -> list[Binding]:
    found: list[Binding] = []
    for cls in classes:
        for binding in cls.BINDINGS:
            if isinstance(binding, Binding):
                found.append(binding)
            else:
                key, action, *rest = binding
                found.append(Binding(key, action, rest[0] if rest else ""))
    return found


class HelpScreen(ModalScreen[None]):
    """A modal table of keys per context; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def __init__(self, sections: Sequence[HelpSection],
                 extra: Sequence[tuple[str, str, str]] = ()) -> None:
        super().__init__()
        self.sections = sections
        self.extra = extra  # (section, keys, description) not held in BINDINGS

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(self._table(), id="help-table")

    def _table(self) -> Table:
        table = Table(box=None, show_header=False, padding=(0, 2), expand=True)
        table.add_column(style="bold", no_wrap=True, min_width=12)
        table.add_column(ratio=1)
        for section, classes in self.sections:
            table.add_row(Text(section, style="bold underline"), "")
            seen: set[tuple[str, str]] = set()
            for binding in _bindings(classes):
                keys = " ".join(self.app.get_key_display(Binding(key.strip(), binding.action))
                                for key in binding.key.split(","))
                description = binding.description or binding.action.replace("_", " ")
                if (keys, description) in seen or not description:
                    continue
                seen.add((keys, description))
                table.add_row(Text(keys, style="bold cyan"), description)
            for extra_section, keys, description in self.extra:
                if extra_section == section:
                    table.add_row(Text(keys, style="bold cyan"), description)
            table.add_row("", "")
        return table

    def action_close(self) -> None:
        self.dismiss(None)
