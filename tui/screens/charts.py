"""Charts of one session: latency per method, and stream gaps over time."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from recorder.store import StoreError
from tui.readers import ReaderPool
from tui.screens.session import session_title
from tui.stats import distributions, gap_series
from tui.widgets.gap_chart import GapChart
from tui.widgets.latency_chart import LatencyChart


class ChartsScreen(Screen[None]):
    """Both charts, read in one worker; the gap chart re-bins when the width changes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,c", "back", "Back"),
        Binding("m", "toggle_names", "Group by method"),
    ]

    class CallsLoaded(Message):
        """Every call's method, name, latency and outcome."""

        def __init__(self, calls: list[tuple[str, str | None, float | None, str]]) -> None:
            super().__init__()
            self.calls = calls

    class ChunksLoaded(Message):
        """Every stream chunk's arrival, and when each stream opened."""

        def __init__(self, chunk_times: list[tuple[int, float]],
                     opened: dict[int, float]) -> None:
            super().__init__()
            self.chunk_times = chunk_times
            self.opened = opened

    def __init__(self, pool: ReaderPool, session: dict[str, Any], *,
                 gap_threshold: float | None) -> None:
        super().__init__()
        self.pool = pool
        self.session = session
        self.gap_threshold_ms = (gap_threshold or 2.0) * 1000
        self.by_name = True
        self._calls: list[tuple[str, str | None, float | None, str]] | None = None
        self._chunks: ChartsScreen.ChunksLoaded | None = None

    def compose(self) -> ComposeResult:
        yield Static(session_title(self.session), classes="title-bar")
        with VerticalScroll(id="charts"):
            yield Static("Latency per method", classes="chart-title")
            yield LatencyChart(id="latency-chart")
            yield Static("Stream gaps over time (longest silence per column, log scale)",
                         classes="chart-title")
            yield GapChart(self.gap_threshold_ms, id="gap-chart")
        yield Footer()

    def on_mount(self) -> None:
        self._load_calls(int(self.session["id"]))
        self._load_chunks(int(self.session["id"]))

    @work(thread=True)
    def _load_calls(self, session_id: int) -> None:
        try:
            with self.pool.reader() as reader:
                calls = reader.calls_for_charts(session_id)
        except StoreError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.post_message(self.CallsLoaded(calls))

    @work(thread=True)
    def _load_chunks(self, session_id: int) -> None:
        try:
            with self.pool.reader() as reader:
                chunk_times = reader.chunk_times(session_id)
                opened: dict[int, float] = {}
                after = 0
                while page := reader.stream_keys(session_id, after_id=after, limit=50_000):
                    opened.update((sid, t) for sid, t, _ in page)
                    after = page[-1][0]
        except StoreError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.post_message(self.ChunksLoaded(chunk_times, opened))

    def on_charts_screen_calls_loaded(self, message: CallsLoaded) -> None:
        self._calls = message.calls
        self._draw()

    def on_charts_screen_chunks_loaded(self, message: ChunksLoaded) -> None:
        self._chunks = message
        self._draw()

    def _draw(self) -> None:
        if self._calls is not None:
            self.query_one(LatencyChart).show(distributions(self._calls, by_name=self.by_name))
        data = self._chunks
        if data is not None:
            chart = self.query_one(GapChart)
            end = self.session["ended_at"] or self.session["started_at"]
            if data.chunk_times:
                end = max(end, max(t for _, t in data.chunk_times))
            chart.show(gap_series(data.chunk_times, data.opened, self.session["started_at"],
                                  end, chart.columns()))

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._draw)

    def action_toggle_names(self) -> None:
        self.by_name = not self.by_name
        self._draw()

    def action_back(self) -> None:
        self.app.pop_screen()
