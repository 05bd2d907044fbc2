"""Render a capture diff: text for people, JSON, JUnit XML and a Markdown PR comment (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import orjson

from replay.capture_diff import CHANGE_KINDS, LEVELS, CaptureDiff, Change, LatencyFigures
from replay.diff import MISSING, Difference

_SHOWN_DIFFERENCES = 5


def _value(value: Any, limit: int = 100) -> str:
    if value is MISSING:
        return "(absent)"
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def difference_line(difference: Difference) -> str:
    return (f"{difference.path}: before {_value(difference.expected)}, "
            f"after {_value(difference.actual)}")


def change_lines(change: Change) -> list[str]:
    """The change's line and what it changed from and to."""
    lines = [f"{change.level.upper():<9} {change.kind:<30} {change.subject}: {change.detail}"]
    if change.differences:
        lines.extend(f"            {difference_line(d)}"
                     for d in change.differences[:_SHOWN_DIFFERENCES])
        if len(change.differences) > _SHOWN_DIFFERENCES:
            lines.append(f"            ... and {len(change.differences) - _SHOWN_DIFFERENCES} "
                         "more")
    elif change.kind.endswith(("description-changed", "instructions-changed")):
        lines.append(f"            before: {_value(change.before)}")
        lines.append(f"            after:  {_value(change.after)}")
    return lines


def summary_line(result: CaptureDiff) -> str:
    counts = result.counts()
    parts = [f"{counts[level]} {level}" for level in LEVELS if counts[level]]
    return (f"{len(result.changes)} change{'s' if len(result.changes) != 1 else ''}"
            + (f": {', '.join(parts)}" if parts else ""))


def _latency_rows(figures: tuple[LatencyFigures, ...]) -> list[tuple[str, ...]]:
    return [(f.method, f"{f.before_count}", _ms(f.before_p50), _ms(f.before_p95),
             f"{f.after_count}", _ms(f.after_p50), _ms(f.after_p95)) for f in figures]


_LATENCY_HEAD = ("method", "calls", "p50 ms", "p95 ms", "calls", "p50 ms", "p95 ms")


def render_text(result: CaptureDiff) -> str:
    lines = [f"ssetap diff {result.before} -> {result.after}", ""]
    if not result.changes:
        lines.append("no changes in the surface or in matching calls")
    for change in result.changes:
        lines.extend(change_lines(change))
    lines += ["", f"calls compared: {result.matched_calls} matched, {result.unmatched_before} "
              f"only before, {result.unmatched_after} only after"]
    if result.latency:
        lines += ["", "latency (before | after):"]
        rows = [_LATENCY_HEAD, *_latency_rows(result.latency)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_LATENCY_HEAD))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                             strict=True)]
            lines.append("  " + "  ".join(cells[:4]) + "  |  " + "  ".join(cells[4:]))
    lines += ["", summary_line(result)]
    return "\n".join(lines) + "\n"


def _change_json(change: Change) -> dict[str, Any]:
    out: dict[str, Any] = {"level": change.level, "kind": change.kind, "subject": change.subject,
                           "detail": change.detail, "before": change.before,
                           "after": change.after}
    if change.differences:
        out["differences"] = [
            {"path": d.path, **({"before": d.expected} if d.expected is not MISSING else {}),
             **({"after": d.actual} if d.actual is not MISSING else {})}
            for d in change.differences]
    return out


def render_json(result: CaptureDiff, fail_on: str) -> str:
    body = {
        "before": result.before, "after": result.after, "fail_on": fail_on,
        "exit_code": result.exit_code(fail_on), "summary": result.counts(),
        "changes": [_change_json(c) for c in result.changes],
        "calls": {"matched": result.matched_calls, "only_before": result.unmatched_before,
                  "only_after": result.unmatched_after},
        "latency": [{"method": f.method, "before": {"calls": f.before_count,
                                                    "p50_ms": f.before_p50,
                                                    "p95_ms": f.before_p95},
                     "after": {"calls": f.after_count, "p50_ms": f.after_p50,
                               "p95_ms": f.after_p95}} for f in result.latency],
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2, default=str).decode() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: CaptureDiff, fail_on: str) -> str:
    """A pull-request comment: the verdict, the changes by level, the latency table."""
    failing = result.exit_code(fail_on) != 0
    mark = "❌" if failing else "✅"
    lines = [f"### {mark} ssetap diff: {summary_line(result)}", "",
             f"`{result.before}` → `{result.after}` (fails on: {fail_on})", ""]
    for level in LEVELS:
        changes = [c for c in result.changes if c.level == level]
        if not changes:
            continue
        lines += [f"#### {level.capitalize()} ({len(changes)})", "",
                  "| change | subject | detail |", "|---|---|---|"]
        for change in changes:
            detail = change.detail
            if change.kind.endswith(("description-changed", "instructions-changed")):
                detail += f": {_value(change.before, 60)} → {_value(change.after, 60)}"
            elif change.differences:
                detail += ": " + "; ".join(difference_line(d)
                                           for d in change.differences[:2])
            lines.append(f"| `{change.kind}` | {_md(change.subject)} | {_md(detail)} |")
        lines.append("")
    if result.latency:
        lines += ["<details><summary>Latency per method (p50 / p95 ms)</summary>", "",
                  "| method | before calls | before p50 | before p95 | after calls | after p50 "
                  "| after p95 |", "|---|--:|--:|--:|--:|--:|--:|"]
        lines.extend("| " + " | ".join(_md(c) for c in row) + " |"
                     for row in _latency_rows(result.latency))
        lines += ["", "</details>", ""]
    lines.append(f"Calls compared: {result.matched_calls} matched, {result.unmatched_before} "
                 f"only before, {result.unmatched_after} only after.")
    return "\n".join(lines) + "\n"


def render_junit(result: CaptureDiff, fail_on: str) -> str:
    """JUnit XML: one testcase per change; those at `fail_on` or worse fail."""
    suites = ET.Element("testsuites", name="ssetap diff")
    failing = set(LEVELS[: LEVELS.index(fail_on) + 1]) if fail_on != "none" else set()
    bad = [c for c in result.changes if c.level in failing]
    suite = ET.SubElement(suites, "testsuite", {
        "name": f"{result.before} -> {result.after}", "tests": str(max(len(result.changes), 1)),
        "failures": str(len(bad)), "errors": "0"})
    if not result.changes:
        ET.SubElement(suite, "testcase", {"classname": "surface", "name": "no changes"})
    for change in result.changes:
        case = ET.SubElement(suite, "testcase", {"classname": change.level,
                                                 "name": f"{change.kind} {change.subject}"})
        if change.level in failing:
            element = ET.SubElement(case, "failure", {"type": change.kind,
                                                      "message": change.detail})
            element.text = "\n".join(line.strip() for line in change_lines(change)[1:]) or \
                CHANGE_KINDS[change.kind].summary
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
