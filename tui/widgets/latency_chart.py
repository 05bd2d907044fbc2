"""Latency per method: p50/p95/max and the distribution as a log-scale histogram strip."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from tui.rows import format_ms
from tui.stats import BUCKET_COUNT, BUCKETS_PER_DECADE, Distribution, bucket_floor

LEVELS = " ▁▂▃▄▅▆▇█"
LABEL_WIDTH = 22
NUMBERS = "{count:>7} {p50:>8} {p95:>8} {maximum:>8}  "
SUFFIX_WIDTH = 14  # "  12 err" or "  1 cancelled" after the strip


def _tone(ms: float) -> str:
    return "green" if ms < 100 else "yellow" if ms < 1000 else "red"


def _resample(buckets: tuple[int, ...], width: int) -> list[tuple[int, float]]:
    """Histogram buckets stretched or squeezed to `width` cells: (count, floor ms) each."""
    cells = []
    for cell in range(width):
        first = cell * BUCKET_COUNT // width
        last = max((cell + 1) * BUCKET_COUNT // width, first + 1)
        cells.append((sum(buckets[first:last]), bucket_floor(first)))
    return cells


def render_latency(distributions: list[Distribution], width: int) -> Text:
    # One line per method: never wrap, cut at the edge instead.
    text = Text(no_wrap=True, overflow="ellipsis")
    strip_width = max(width - LABEL_WIDTH - len(NUMBERS.format(
        count="", p50="", p95="", maximum="")) - SUFFIX_WIDTH, 8)
    text.append(f"{'method':<{LABEL_WIDTH}}", "bold")
    text.append(NUMBERS.format(count="calls", p50="p50", p95="p95", maximum="max"), "bold")
    text.append("distribution\n", "bold")
    if not distributions:
        text.append("no calls in this session\n", "dim")
        return text
    for dist in distributions:
        label = dist.label if len(dist.label) <= LABEL_WIDTH - 1 else \
            dist.label[: LABEL_WIDTH - 2] + "…"
        text.append(f"{label:<{LABEL_WIDTH}}")
        text.append(NUMBERS.format(count=f"{dist.count:,}", p50=format_ms(dist.p50) or "-",
                                   p95=format_ms(dist.p95) or "-",
                                   maximum=format_ms(dist.maximum) or "-"))
        cells = _resample(dist.buckets, strip_width)
        peak = max((c for c, _ in cells), default=0) or 1
        for count, floor in cells:
            level = 0 if not count else max(1, round(count / peak * (len(LEVELS) - 1)))
            text.append(LEVELS[level], _tone(floor))
        extra = []
        if dist.errors:
            extra.append(f"{dist.errors} err")
        if dist.pending:
            extra.append(f"{dist.pending} pending")
        if dist.cancelled:
            extra.append(f"{dist.cancelled} cancelled")
        text.append(("  " + ", ".join(extra)) if extra else "", "yellow")
        text.append("\n")
    # Decade ticks under the strips, where they fit.
    axis = [" "] * strip_width
    for decade, label in enumerate(("0.1ms", "1ms", "10ms", "100ms", "1s", "10s", "100s")):
        position = decade * BUCKETS_PER_DECADE * strip_width // BUCKET_COUNT
        end = position + len(label)
        if end <= strip_width and all(c == " " for c in axis[max(position - 1, 0):end + 1]):
            axis[position:end] = list(label)
    text.append(" " * (LABEL_WIDTH + len(NUMBERS.format(count="", p50="", p95="",
                                                        maximum=""))))
    text.append("".join(axis), "dim")
    return text


class LatencyChart(Widget):
    """Latency distributions of a session's calls, one line per method."""

    DEFAULT_CSS = """
    LatencyChart { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.distributions: list[Distribution] | None = None

    def show(self, distributions: list[Distribution]) -> None:
        self.distributions = distributions
        self.refresh(layout=True)

    def render(self) -> RenderableType:
        if self.distributions is None:
            return Text("reading calls…", style="dim")
        return render_latency(self.distributions, self.size.width or 80)

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return 3 + len(self.distributions or ())
