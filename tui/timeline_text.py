"""One timeline row as text: flag gutter, time, direction, badge, summary and note (pure).

Styles come from a lookup by tone name, so the widget keeps them themeable (component classes)
and this stays testable without an app.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rich.style import Style
from rich.text import Text

from tui.rows import Entry, format_offset

# Columns: flag gutter, time, direction arrow, badge; the note sits at the right edge.
TIME_WIDTH = 10
BADGE_WIDTH = 5
ARROWS = {"c2s": "→", "s2c": "←"}

StyleOf = Callable[[str], Style]


def gap_text(offset: float, milliseconds: int, threshold: float, style: StyleOf) -> Text:
    """A silence row: as long as the screen is wide, louder the longer the silence."""
    seconds = milliseconds / 1000
    long = seconds >= max(30.0, threshold * 10)
    # One block per doubling over the threshold: the bar's length reads as the size.
    blocks = "▮" * min(12, 1 + int(math.log2(max(seconds / threshold, 1.0))))
    tone = style("gap-long" if long else "gap")
    text = Text(" ")
    text.append(f"{format_offset(offset):>{TIME_WIDTH}}", style("time"))
    text.append(f"  ┄┄ {seconds:,.1f} s of silence {blocks} ", tone)
    text.append("┄" * 400, tone)
    return text


def entry_text(entry: Entry, width: int, offset: float, severity: str | None,
               style: StyleOf) -> Text:
    text = Text()
    # The gutter bar marks a flagged row, in the colour of its worst flag.
    text.append("▌" if severity else " ", style(f"flag-{severity}") if severity else None)
    text.append(f"{format_offset(offset):>{TIME_WIDTH}}", style("time"))
    text.append(" ")
    text.append(ARROWS.get(entry.direction or "", " "), style(entry.direction or ""))
    text.append(" ")
    text.append(f"{entry.badge:<{BADGE_WIDTH}}", style(entry.tone))
    text.append(" ")
    note = entry.note
    room = width - text.cell_len - (len(note) + 1 if note else 0)
    body = ("  " if entry.nested else "") + entry.text
    if len(body) > room:
        body = body[: max(room - 1, 0)] + "…"
    text.append(f"{body:<{max(room, 0)}}")
    if note:
        text.append(" ")
        text.append(note, style(entry.note_tone))
    return text
