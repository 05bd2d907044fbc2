"""The columns of the sessions table: values, cells, sorting, and which fit a width (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from recorder.report import duration, iso
from tui.rows import format_ms


def _flags_cell(s: dict[str, Any]) -> Text:
    if s.get("flags") is None:
        return Text("…", style="dim")
    text = Text()
    for key, letter, style in (("flag_errors", "E", "bold red"),
                               ("flag_warnings", "W", "bold yellow"),
                               ("flag_infos", "I", "blue")):
        if s.get(key):
            text.append(f"{s[key]}{letter} ", style)
    text.rstrip()
    return text if text.plain else Text("-", style="dim")


def _client(s: dict[str, Any]) -> str:
    name = s.get("client_name") or "-"
    return f"{name} {s['client_version']}" if s.get("client_version") else name


def _server(s: dict[str, Any]) -> str:
    if s.get("server_name"):
        version = f" {s['server_version']}" if s.get("server_version") else ""
        return f"{s['server_name']}{version} @ {s['server']}"
    return str(s["server"])


def _num(value: Any) -> Text:
    if value is None:
        return Text("…", style="dim")  # counts still being read
    return Text(f"{value:,}" if isinstance(value, int) else str(value))


def _count(key: str) -> Callable[[dict[str, Any]], int]:
    return lambda s: -1 if s.get(key) is None else int(s[key])


def _ms_cell(value: float | None, loaded: bool) -> Text:
    if value is None:
        return Text("…" if not loaded else "-", style="dim")
    return Text(format_ms(value))


@dataclass(frozen=True, slots=True)
class Column:
    """A column: how to sort by it, how to show a cell, how wide it may get."""

    key: str
    label: str
    sort_value: Callable[[dict[str, Any]], Any]
    cell: Callable[[dict[str, Any]], Text | str]
    width: int  # the widest a cell gets (text is cut with an ellipsis past it)
    right: bool = False


# In priority order: 80 columns fit the first nine (through p95); the rest come with width.
COLUMNS: tuple[Column, ...] = (
    Column("id", "#", lambda s: s["id"], lambda s: _num(s["id"]), 6, right=True),
    Column("client", "client", lambda s: _client(s).lower(), _client, 14),
    Column("started", "started", lambda s: s["started_at"],
           lambda s: (iso(s["started_at"]) or "-")[11:19], 8),
    Column("duration", "lasted", lambda s: (s["ended_at"] or s["started_at"]) - s["started_at"],
           lambda s: duration(s["started_at"], s["ended_at"]), 9, right=True),
    Column("messages", "msgs", _count("messages"), lambda s: _num(s["messages"]), 9, right=True),
    Column("pending", "pend", _count("pending"),
           lambda s: _num(None) if s["pending"] is None else Text(
               str(s["pending"]), style="bold yellow" if s["pending"] else "dim"), 5, right=True),
    Column("flags", "flags", lambda s: (_count("flag_errors")(s), _count("flag_warnings")(s),
                                        _count("flag_infos")(s)), _flags_cell, 12),
    Column("p50", "p50", lambda s: s.get("p50") if s.get("p50") is not None else -1.0,
           lambda s: _ms_cell(s.get("p50"), s.get("_latency_loaded", False)), 8, right=True),
    Column("p95", "p95", lambda s: s.get("p95") if s.get("p95") is not None else -1.0,
           lambda s: _ms_cell(s.get("p95"), s.get("_latency_loaded", False)), 8, right=True),
    Column("transport", "via", lambda s: s["transport"],
           lambda s: "sse" if s["transport"] == "sse" else "http", 4),
    Column("protocol", "protocol", lambda s: s["protocol_version"] or "",
           lambda s: s["protocol_version"] or "-", 10),
    Column("server", "server", lambda s: _server(s).lower(), _server, 60),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)

ZERO_COUNTS = {"messages": 0, "requests": 0, "answered": 0, "pending": 0, "flags": 0,
                "flag_errors": 0, "flag_warnings": 0, "flag_infos": 0}


def with_zeros(counts: dict[int, dict[str, int]], ids: list[int]) -> dict[int, dict[str, int]]:
    """Sessions absent from the grouped counts have none of anything."""
    for sid in ids:
        counts.setdefault(sid, dict(ZERO_COUNTS))
    return counts


def haystack(s: dict[str, Any]) -> str:
    return " ".join(str(v) for v in (
        s["id"], s["key"], _client(s), s["transport"], _server(s), s["protocol_version"] or "",
        s.get("endpoint") or "", s.get("user_agent") or "")).lower()


# Column widths come from this many sessions at the top of the table (all would cost a
# cell per session per column on every update).
WIDTH_SAMPLE = 1000


def natural_widths(sessions: list[dict[str, Any]]) -> dict[str, int]:
    """Per column, the width its label (with room for a sort arrow) and cells need."""
    widths = {c.key: len(c.label) + 2 for c in COLUMNS}
    for session in sessions[:WIDTH_SAMPLE]:
        for column in COLUMNS:
            cell = column.cell(session)
            size = cell.cell_len if isinstance(cell, Text) else len(cell)
            if size > widths[column.key]:
                widths[column.key] = min(size, column.width)
    return widths


def layout(width: int, natural: dict[str, int]) -> list[tuple[Column, int]]:
    """The columns that fit `width`, in priority order, with their widths (a space between
    columns and one at the left edge). The last column shown takes what is left over."""
    shown: list[tuple[Column, int]] = []
    used = 1
    for column in COLUMNS:
        need = natural.get(column.key, len(column.label) + 2)
        if column.key == "server":
            need = min(need, 12)  # shown cut rather than not at all
        if used + need + 1 > width:
            break
        shown.append((column, need))
        used += need + 1
    if shown:
        last, last_width = shown[-1]
        shown[-1] = (last, max(last_width, min(natural.get(last.key, last_width),
                                               width - used + last_width)))
    return shown
