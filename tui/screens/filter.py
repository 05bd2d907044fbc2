"""A dialog to choose what the timeline shows: methods, direction, kinds, flagged only."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Label,
    RadioButton,
    RadioSet,
    SelectionList,
)

from recorder.model import C2S, S2C
from recorder.store import StoreError
from tui.filters import ROW_KINDS, TimelineFilter
from tui.readers import ReaderPool

KIND_LABELS = {
    "request": "requests", "notification": "notifications", "result": "results",
    "error": "errors", "invalid": "invalid JSON-RPC", "http": "HTTP exchanges",
    "stream": "stream opens/closes", "heartbeat": "heartbeats (SSE comments)",
    "sse": "other SSE items",
}


class FilterScreen(ModalScreen[TimelineFilter | None]):
    """Returns the new filter, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "apply", "Apply"),
    ]

    class MethodsLoaded(Message):
        def __init__(self, methods: list[tuple[str, int]]) -> None:
            super().__init__()
            self.methods = methods

    def __init__(self, pool: ReaderPool, session_id: int, current: TimelineFilter) -> None:
        super().__init__()
        self.pool = pool
        self.session_id = session_id
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="filter-dialog"):
            yield Label("Filter the timeline  (space toggles, ctrl+s applies, esc cancels)",
                        id="filter-title")
            with Horizontal(id="filter-lists"):
                with Vertical():
                    yield Label("Methods (none = any)")
                    yield SelectionList[str](id="filter-methods", compact=True)
                with Vertical():
                    yield Label("Kinds (none = any)")
                    yield SelectionList[str](
                        *((KIND_LABELS[k], k, k in self.current.kinds) for k in ROW_KINDS),
                        id="filter-kinds", compact=True)
            with Horizontal(id="filter-options"):
                with RadioSet(id="filter-direction", compact=True):
                    yield RadioButton("both directions", value=not self.current.directions)
                    yield RadioButton("client → server", value=self.current.directions == {C2S})
                    yield RadioButton("server → client", value=self.current.directions == {S2C})
                yield Checkbox("flagged rows only", self.current.flagged_only,
                               id="filter-flagged", compact=True)
            with Horizontal(id="filter-buttons"):
                yield Button("Apply", variant="primary", id="filter-apply", compact=True)
                yield Button("Clear all", id="filter-clear", compact=True)
                yield Button("Cancel", id="filter-cancel", compact=True)

    def on_mount(self) -> None:
        self._load_methods()
        self.query_one("#filter-methods").focus()

    @work(thread=True)
    def _load_methods(self) -> None:
        try:
            with self.pool.reader() as reader:
                methods = reader.method_counts(self.session_id)
        except StoreError:
            methods = []
        self.post_message(self.MethodsLoaded(methods))

    def on_filter_screen_methods_loaded(self, message: MethodsLoaded) -> None:
        selection = self.query_one("#filter-methods", SelectionList)
        known = {m for m, _ in message.methods}
        for method, count in message.methods:
            selection.add_option((f"{method}  ({count:,})", method,
                                  method in self.current.methods))
        for method in sorted(self.current.methods - known):
            selection.add_option((method, method, True))

    def chosen(self) -> TimelineFilter:
        direction = self.query_one("#filter-direction", RadioSet).pressed_index
        return TimelineFilter(
            methods=frozenset(self.query_one("#filter-methods", SelectionList).selected),
            directions=frozenset({1: {C2S}, 2: {S2C}}.get(direction, set())),
            kinds=frozenset(self.query_one("#filter-kinds", SelectionList).selected),
            flagged_only=self.query_one("#filter-flagged", Checkbox).value,
        )

    def action_apply(self) -> None:
        self.dismiss(self.chosen())

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#filter-apply")
    def _apply_pressed(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#filter-clear")
    def _clear_pressed(self) -> None:
        self.dismiss(TimelineFilter())

    @on(Button.Pressed, "#filter-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()
