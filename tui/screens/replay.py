"""Replay one session against a live server and show the verdict of every call, with diffs.

A small form (target URL, skip tools/call, timing, latency threshold), then the replay runs in
a thread worker (its own event loop, so the UI never waits on the network or the capture):
each judged call is posted as a message and appears in the list at once; when the replay ends
the list becomes the report (one row per call, in order). The highlighted row's differences
(JSON path, expected, actual) show below. Problems (bad URL, unreachable target) are one line
in the status bar, never a traceback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Final

import httpx
import orjson
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, RadioButton, RadioSet, Static
from textual.worker import Worker, get_current_worker

from recorder.store import StoreError
from replay.cli import ReplayUsageError, check_target
from replay.diff import MISSING, Difference
from replay.engine import ReplayOptions, TargetError, replay_async
from replay.plan import FAST, RECORDED, Plan, PlanError
from replay.recording import RecordingError
from replay.report import summary_line
from replay.results import DIFFERS, ERROR, MATCH, SLOW, CallResult, ReplayResult, SessionResult
from replay.results import MISSING as MISSING_STATUS
from replay.verdict import LatencyError, parse_latency_limit

DEFAULT_LATENCY_TEXT: Final = "2x+250ms"
SIDE_EFFECTS_WARNING: Final = ("⚠ tools/call runs the tools again on the target: their side "
                               "effects (writes, mails, payments) happen again.")
VERDICT_STYLES: Final = {MATCH: "green", DIFFERS: "yellow", SLOW: "magenta",
                         MISSING_STATUS: "red", ERROR: "bold red"}
# Bad input and unreachable targets: reported in one line.
EXPECTED_ERRORS: Final = (TargetError, StoreError, RecordingError, PlanError, httpx.HTTPError,
                          OSError)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _value(value: Any, limit: int = 200) -> str:
    if value is MISSING:
        return "(absent)"
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def verdict_text(call: CallResult) -> Text:
    label = call.status if call.ok else call.status.upper()
    if call.slow and call.status != SLOW:
        label += " +slow"
    return Text(label, style=VERDICT_STYLES.get(call.status, ""))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


class ReplayScreen(ModalScreen[None]):
    """Replays one session of a capture against a target URL; escape closes."""

    DEFAULT_CSS = """
    ReplayScreen {
        align: center middle;
    }
    #replay-dialog {
        width: 100%;
        height: 100%;
        max-width: 140;
        background: $surface;
        border: round $primary;
        padding: 0 1;
    }
    #replay-dialog Label {
        height: 1;
    }
    #replay-title {
        text-style: bold;
    }
    .replay-row {
        height: 1;
        margin-bottom: 0;
    }
    .replay-row Label {
        width: auto;
        padding-right: 1;
    }
    #replay-target {
        width: 1fr;
    }
    #replay-latency {
        width: 14;
    }
    #replay-run {
        min-width: 9;
        margin-left: 1;
    }
    #replay-skip, #replay-timing, #replay-timing RadioButton {
        border: none;
        height: 1;
        padding: 0;
        background: $surface;
    }
    #replay-timing {
        layout: horizontal;
        width: auto;
    }
    #replay-timing RadioButton {
        width: auto;
        margin-right: 1;
    }
    #replay-skip {
        width: auto;
        margin-right: 2;
    }
    #replay-warning {
        height: auto;
        color: $warning;
    }
    #replay-status {
        height: 1;
        background: $boost;
        color: $text;
        padding: 0 1;
    }
    #replay-status.-error {
        color: $error;
        text-style: bold;
    }
    #replay-calls {
        height: 1fr;
        min-height: 4;
    }
    #replay-diff {
        height: auto;
        max-height: 12;
        border-top: solid $primary-darken-2;
        overflow-y: auto;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+r", "run", "Run replay"),
    ]

    class CallJudged(Message):
        """One call was judged during run `run` (`total` calls are planned)."""

        def __init__(self, run: int, call: CallResult, total: int) -> None:
            super().__init__()
            self.run = run
            self.call = call
            self.total = total

    class Finished(Message):
        def __init__(self, run: int, result: ReplayResult) -> None:
            super().__init__()
            self.run = run
            self.result = result

    class Failed(Message):
        def __init__(self, run: int, error: str) -> None:
            super().__init__()
            self.run = run
            self.error = error

    def __init__(self, db_path: Path, session_id: int, *, target: str = "") -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.session_id = session_id
        self.initial_target = target
        self.run_number = 0
        self.running = False
        self.calls: list[CallResult] = []
        self.result: ReplayResult | None = None
        self.error: str | None = None
        self.shown_call: CallResult | None = None
        self._total = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="replay-dialog"):
            yield Label(f"Replay session {self.session_id} against a live server  "
                        "(enter or ctrl+r runs, esc closes)", id="replay-title")
            with Horizontal(classes="replay-row"):
                yield Label("Target")
                yield Input(self.initial_target, placeholder="http://127.0.0.1:8000/mcp",
                            id="replay-target", compact=True)
                yield Label(" slow if")
                yield Input(DEFAULT_LATENCY_TEXT, id="replay-latency", compact=True,
                            tooltip="latency threshold: 2x, 250ms, 2x+250ms or off")
                yield Button("Run", id="replay-run", variant="primary", compact=True)
            with Horizontal(classes="replay-row"):
                yield Checkbox("skip tools/call (side effects)", True, id="replay-skip")
                yield Label("timing")
                with RadioSet(id="replay-timing"):
                    yield RadioButton("fast", True, id="timing-fast")
                    yield RadioButton("recorded", id="timing-recorded")
            yield Static(SIDE_EFFECTS_WARNING, id="replay-warning")
            yield Static("ready: check the target, then run", id="replay-status")
            table: DataTable[Any] = DataTable(id="replay-calls", cursor_type="row",
                                              zebra_stripes=True)
            yield table
            yield Static("", id="replay-diff")

    def on_mount(self) -> None:
        table = self.query_one("#replay-calls", DataTable)
        table.add_columns("#", "call", "verdict", "latency", "recorded")
        self._sync_warning()
        self.query_one("#replay-target", Input).focus()

    # Form -------------------------------------------------------------------------------------

    @on(Checkbox.Changed, "#replay-skip")
    def _skip_changed(self) -> None:
        self._sync_warning()

    def _sync_warning(self) -> None:
        skip = self.query_one("#replay-skip", Checkbox).value
        text = ("tools/call requests are left out (their side effects are not repeated)" if skip
                else SIDE_EFFECTS_WARNING)
        self.query_one("#replay-warning", Static).update(text)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#replay-run")
    def _pressed(self) -> None:
        self.action_run()

    def _options(self) -> tuple[str, ReplayOptions]:
        target = check_target(self.query_one("#replay-target", Input).value.strip())
        latency = parse_latency_limit(self.query_one("#replay-latency", Input).value or "off")
        recorded = self.query_one("#replay-timing", RadioSet).pressed_index == 1
        skip = ("tools/call",) if self.query_one("#replay-skip", Checkbox).value else ()
        return target, ReplayOptions(timing=RECORDED if recorded else FAST, latency=latency,
                                     skip=skip)

    def action_run(self) -> None:
        if self.running:
            self.notify("A replay is already running", severity="warning", timeout=2)
            return
        try:
            target, options = self._options()
        except (ReplayUsageError, LatencyError) as exc:
            self._set_status(one_line(exc).replace("--target", "the target")
                             .replace("--latency-threshold", "the latency threshold"),
                             error=True)
            return
        self.run_number += 1
        self.running = True
        self.calls = []
        self.result = None
        self.error = None
        self._total = 0
        self.query_one("#replay-calls", DataTable).clear()
        self._show_call(None)
        self._set_status(f"connecting to {target}…")
        self._replay(self.run_number, target, options)

    def action_close(self) -> None:
        self.workers.cancel_group(self, "replay")
        self.dismiss(None)

    # The replay (a thread with its own event loop) --------------------------------------------

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def _replay(self, run: int, target: str, options: ReplayOptions) -> None:
        worker: Worker[None] = get_current_worker()
        totals: dict[int, int] = {}

        def judged(plan: Plan, call: CallResult) -> None:
            total = totals.get(id(plan))
            if total is None:
                total = totals[id(plan)] = sum(1 for s in plan.requests if not s.synthetic)
            self.post_message(self.CallJudged(run, call, total))

        async def main() -> ReplayResult:
            task = asyncio.create_task(replay_async(self.db_path, target,
                                                    session=str(self.session_id),
                                                    options=options, on_result=judged))
            while not task.done():
                if worker.is_cancelled:
                    task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            return task.result()

        try:
            result = asyncio.run(main())
        except asyncio.CancelledError:
            return
        except EXPECTED_ERRORS as exc:
            self.post_message(self.Failed(run, one_line(exc)))
            return
        except Exception as exc:  # a clear line beats a traceback in a TUI
            self.post_message(self.Failed(run, f"replay failed: {type(exc).__name__}: "
                                               f"{one_line(exc)}"))
            return
        self.post_message(self.Finished(run, result))

    def on_replay_screen_call_judged(self, message: CallJudged) -> None:
        if message.run != self.run_number:
            return
        self._total = max(self._total, message.total)
        self.calls.append(message.call)
        self._add_row(len(self.calls) - 1, message.call)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self._counts().items()))
        self._set_status(f"running… {len(self.calls)} of {self._total} calls judged · {counts}")

    def on_replay_screen_finished(self, message: Finished) -> None:
        if message.run != self.run_number:
            return
        self.running = False
        self.result = message.result
        session = next((s for s in message.result.sessions), None)
        if session is None:
            self._set_status(f"no session {self.session_id} in this capture", error=True)
            return
        self.calls = list(session.calls)
        table = self.query_one("#replay-calls", DataTable)
        table.clear()
        for i, call in enumerate(self.calls):
            self._add_row(i, call)
        self._set_status(self._summary(session), error=not session.ok)
        if self.calls:
            table.focus()
            table.move_cursor(row=0)
            self._show_call(self.calls[0])

    def on_replay_screen_failed(self, message: Failed) -> None:
        if message.run != self.run_number:
            return
        self.running = False
        self.error = message.error
        self._set_status(message.error, error=True)

    # The report -------------------------------------------------------------------------------

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call.status] = counts.get(call.status, 0) + 1
        return counts

    def _summary(self, session: SessionResult) -> str:
        verdict = "PASSED" if session.ok else "FAILED"
        parts = [f"{verdict}: {summary_line(session.counts(), len(session.calls))}"]
        if session.skipped:
            parts.append(f"{session.skipped} left out (tools/call)")
        parts.append(f"live transport {session.live_transport or 'not connected'}")
        if session.error:
            parts.append(session.error)
        return " · ".join(parts)

    def _add_row(self, index: int, call: CallResult) -> None:
        self.query_one("#replay-calls", DataTable).add_row(
            str(call.ordinal), call.label, verdict_text(call), _ms(call.latency_ms),
            _ms(call.recorded_latency_ms), key=str(index))

    def _set_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#replay-status", Static)
        status.set_class(error, "-error")
        status.update(Text(text))

    @on(DataTable.RowHighlighted, "#replay-calls")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.calls):
            self._show_call(self.calls[event.cursor_row])

    def _show_call(self, call: CallResult | None) -> None:
        self.shown_call = call
        pane = self.query_one("#replay-diff", Static)
        if call is None:
            pane.update("")
            return
        pane.update(call_details(call))


def call_details(call: CallResult) -> Table | Text:
    """The differences of one call (path, expected, actual), else its detail line."""
    heading = Text.assemble((f"#{call.ordinal} {call.label}: ", "bold"), verdict_text(call))
    if call.detail:
        heading.append(f" · {call.detail}")
    if call.slow:
        heading.append(f" · {_ms(call.latency_ms)} live vs {_ms(call.recorded_latency_ms)} "
                       "recorded")
    if not call.differences:
        if call.ok and not call.detail:
            heading.append(" · same answer as recorded")
        return heading
    table = Table(title=heading, title_justify="left", expand=True, show_edge=False,
                  pad_edge=False)
    table.add_column("path", style="cyan", no_wrap=True)
    table.add_column("expected", overflow="fold")
    table.add_column("actual", overflow="fold")
    for difference in call.differences:
        table.add_row(*difference_cells(difference))
    return table


def difference_cells(difference: Difference) -> tuple[str, str, str]:
    return difference.path, _value(difference.expected), _value(difference.actual)
