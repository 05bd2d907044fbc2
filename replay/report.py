"""Render replay results: a text report for people, JSON and JUnit XML for CI (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from recorder.junit import ERROR, FAILURE, JunitCase, JunitProblem, JunitSuite, render
from replay.diff import MISSING, Difference
from replay.results import MATCH, STATUSES, CallResult, ReplayResult, SessionResult

_SHOWN_DIFFERENCES = 10


def _value(value: Any, limit: int = 120) -> str:
    if value is MISSING:
        return "(absent)"
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def difference_line(difference: Difference) -> str:
    return (f"{difference.path}: expected {_value(difference.expected)}, "
            f"got {_value(difference.actual)}")


def call_lines(call: CallResult, *, label_width: int = 32) -> list[str]:
    """One line for the call, then its differences or detail, indented."""
    status = call.status if call.ok else call.status.upper()
    label = call.label if len(call.label) <= label_width else call.label[: label_width - 3] + "..."
    timing = f"{_ms(call.latency_ms):>10}"
    if call.recorded_latency_ms is not None:
        timing += f"  (recorded {_ms(call.recorded_latency_ms)})"
    # The recorded id too, so a line can be found in `ssetap show` (which lists calls by id).
    rid = f"id {call.recorded_id}" if call.recorded_id is not None else ""
    lines = [f"  #{call.ordinal:<4} {rid:<8} {label:<{label_width}} {status:<8} {timing}".rstrip()]
    shown = call.differences[:_SHOWN_DIFFERENCES]
    lines.extend(f"          {difference_line(d)}" for d in shown)
    if len(call.differences) > len(shown):
        lines.append(f"          ... and {len(call.differences) - len(shown)} more differences")
    if call.detail:
        lines.append(f"          {call.detail}")
    if call.slow and call.status not in ("slow", MATCH):
        lines.append("          also slower than recorded beyond the latency threshold")
    return lines


def summary_line(counts: dict[str, int], total: int) -> str:
    parts = [f"{counts[s]} {s}" for s in reversed(STATUSES) if counts.get(s)]
    return f"{total} calls: " + (", ".join(parts) if parts else "none replayed")


def session_text(result: ReplayResult, session: SessionResult) -> list[str]:
    live = session.live_transport or "not connected"
    lines = [(f"session {session.session_id} ({session.recorded_transport}, "
              f"{session.session_key}) -> {result.target} ({live})")]
    for call in session.calls:
        lines.extend(call_lines(call))
    if session.error:
        lines.append(f"  ERROR: {session.error}")
    if session.skipped:
        lines.append(f"  {session.skipped} requests left out by --only/--skip")
    lines.extend(f"  note: {note}" for note in session.notes)
    lines.append("  " + summary_line(session.counts(), len(session.calls)))
    return lines


def render_text(result: ReplayResult) -> str:
    """The human report: every call with its verdict, differences under the failures."""
    lines = [(f"ssetap replay of {result.capture} against {result.target} "
              f"(timing {result.timing})")]
    for session in result.sessions:
        lines.append("")
        lines.extend(session_text(result, session))
    total = sum(len(s.calls) for s in result.sessions)
    verdict = "PASSED" if result.ok else "FAILED"
    lines += ["", f"{verdict}: {summary_line(result.counts(), total)}"]
    return "\n".join(lines) + "\n"


def render_failures(result: ReplayResult) -> str:
    """Only what went wrong (for pytest failures), with the summary."""
    lines = []
    for session in result.sessions:
        bad = [c for c in session.calls if not c.ok]
        if not bad and not session.error:
            continue
        lines.append(f"session {session.session_id} ({session.recorded_transport}) -> "
                     f"{result.target} ({session.live_transport or 'not connected'})")
        for call in bad:
            lines.extend(call_lines(call))
        if session.error:
            lines.append(f"  ERROR: {session.error}")
    total = sum(len(s.calls) for s in result.sessions)
    lines.append(f"replay of {result.capture} FAILED: {summary_line(result.counts(), total)}")
    return "\n".join(lines)


def _difference_json(difference: Difference) -> dict[str, Any]:
    out: dict[str, Any] = {"path": difference.path}
    if difference.expected is not MISSING:
        out["expected"] = difference.expected
    if difference.actual is not MISSING:
        out["actual"] = difference.actual
    return out


def call_json(call: CallResult) -> dict[str, Any]:
    return {
        "ordinal": call.ordinal, "recorded_id": call.recorded_id, "method": call.method,
        "name": call.name,
        "status": call.status, "latency_ms": call.latency_ms,
        "recorded_latency_ms": call.recorded_latency_ms, "slow": call.slow,
        "differences": [_difference_json(d) for d in call.differences],
        "detail": call.detail,
    }


def result_json(result: ReplayResult) -> dict[str, Any]:
    """The machine-readable report (`--json`); absent values are left out of differences."""
    total = sum(len(s.calls) for s in result.sessions)
    return {
        "capture": result.capture, "target": result.target, "timing": result.timing,
        "ok": result.ok, "exit_code": result.exit_code,
        "summary": {"calls": total, **{s: result.counts().get(s, 0) for s in reversed(STATUSES)}},
        "sessions": [
            {"session": s.session_id, "key": s.session_key,
             "recorded_transport": s.recorded_transport, "live_transport": s.live_transport,
             "ok": s.ok, "error": s.error, "skipped": s.skipped, "notes": list(s.notes),
             "calls": [call_json(c) for c in s.calls]}
            for s in result.sessions
        ],
    }


def render_json(result: ReplayResult) -> str:
    return orjson.dumps(result_json(result), option=orjson.OPT_INDENT_2, default=str).decode() + "\n"


def render_junit(result: ReplayResult) -> str:
    """JUnit XML: one testsuite per session, one testcase per call (recorder.junit writes it)."""
    suites = []
    for session in result.sessions:
        cases = []
        for call in session.calls:
            problem = None
            if call.status != MATCH:
                text = "\n".join(line.strip() for line in call_lines(call)[1:])
                problem = JunitProblem(ERROR if call.status == "error" else FAILURE,
                                       call.status, call.detail or call.status, text or None)
            cases.append(JunitCase(f"session{session.session_id}", f"#{call.ordinal} {call.label}",
                                   (call.latency_ms or 0) / 1000, problem))
        if session.error:
            cases.append(JunitCase(f"session{session.session_id}", "session",
                                   problem=JunitProblem(ERROR, "session", session.error)))
        suites.append(JunitSuite(f"{result.capture} session {session.session_id}", tuple(cases)))
    return render("ssetap replay", suites)
