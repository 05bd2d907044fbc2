"""Stream gaps over time: the longest silence per time slice, as a log-scale bar chart."""

from __future__ import annotations

import math

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from tui.rows import format_ms, format_offset
from tui.stats import GapSeries

EIGHTHS = " ▁▂▃▄▅▆▇█"
AXIS_WIDTH = 7
# The y axis runs from 1 ms to 100 s in decades: silences are read by order of magnitude.
DECADES = (("100s", 5), ("10s", 4), ("1s", 3), ("100ms", 2), ("10ms", 1), ("1ms", 0))


def _level(ms: float) -> float:
    """0..5: decades above 1 ms."""
    return min(max(math.log10(ms), 0.0), 5.0) if ms > 0 else 0.0


def render_gaps(series: GapSeries, height: int, threshold_ms: float) -> Text:
    height = max(height, 3)
    columns = len(series.maxima_ms)
    text = Text()
    levels = [_level(ms) for ms in series.maxima_ms]
    for row in range(height):
        top = 5 * (height - row) / height  # the level at this row's top
        bottom = 5 * (height - row - 1) / height
        label = next((name for name, decade in DECADES if bottom < decade <= top + 1e-9), "")
        text.append(f"{label:>{AXIS_WIDTH - 1}}┤", "dim")
        for level, ms in zip(levels, series.maxima_ms):
            if ms <= 0 or level <= bottom:
                text.append(" ")
                continue
            fill = min((level - bottom) / (top - bottom), 1.0)
            style = "red" if ms >= max(threshold_ms * 10, 30_000) else \
                "yellow" if ms >= threshold_ms else "green"
            text.append(EIGHTHS[max(1, round(fill * 8))], style)
        text.append("\n")
    text.append(" " * (AXIS_WIDTH - 1) + "└" + "─" * columns + "\n", "dim")
    left = format_offset(0.0)
    right = format_offset(series.end - series.start)
    text.append(" " * AXIS_WIDTH + left + " " * max(columns - len(left) - len(right), 1) + right,
                "dim")
    if series.worst_at is not None:
        text.append(f"\nlongest silence {format_ms(series.worst_ms)} at "
                    f"{format_offset(series.worst_at - series.start)}; each column is "
                    f"{format_ms(series.bucket_seconds * 1000)}", "bold")
    return text


class GapChart(Widget):
    """Longest stream silence per slice of the session."""

    DEFAULT_CSS = """
    GapChart { height: 12; }
    """

    def __init__(self, threshold_ms: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.threshold_ms = threshold_ms
        self.series: GapSeries | None = None

    def columns(self) -> int:
        return max((self.size.width or 80) - AXIS_WIDTH - 1, 10)

    def show(self, series: GapSeries) -> None:
        self.series = series
        self.refresh()

    def render(self) -> RenderableType:
        if self.series is None:
            return Text("reading stream chunks…", style="dim")
        if not any(self.series.maxima_ms):
            return Text("no SSE stream bytes in this session", style="dim")
        return render_gaps(self.series, max(self.size.height - 3, 3), self.threshold_ms)
