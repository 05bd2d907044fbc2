"""`ssetap check`: re-run the stream-health checks over a stored capture and report.

How it works: the capture's facts (sessions, exchanges, streams, chunks, SSE items and
messages) are read back in time order and turned into the same typed events (recorder.events)
the recorder emits live, the call events derived again by recorder.correlate. Ticks are put in every `tick_interval` (0.5 s) of capture time, so silences are
judged as they were live. The result goes through the same `HealthMonitor`.

Thresholds: the recorder stores the config its live checks used (meta `health_config`).
`check` starts from that config, then applies `--config FILE`, then the flags
(`--request-timeout`, `--heartbeat-interval`). Old captures can be re-checked with new rules
or new thresholds.

Live flags and check flags:
- Live flags (`source='live'`) are a record of what the recorder reported during the
  recording. They are never rewritten.
- `check` always reports its own complete analysis. It marks the flags that were also
  raised live.
- Unless `--no-store` is given, `check` replaces the capture's earlier `source='check'` rows.
  It stores only the findings that no live flag already holds. A flag is the same finding
  when it has the same kind and the same subject. The detector names the subject in
  `details.subject`: a stream, a call, a message, a session, a client's reconnect loop or
  a server.
- So `sessions` and `show` can count every row of the flags table without counting a
  finding twice.
- A live flag that a re-check with other thresholds no longer raises stays, because it was
  reported at the time. The check report is the current verdict.

Exit codes: 0 when nothing reaches `--fail-on` (default: error), 1 when something does, and
2 for bad input, with a one-line error.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from recorder import gaps
from recorder.model import SEVERITIES, Flag, severity_rank

if TYPE_CHECKING:  # the heavy parts load when the command runs, not when `ssetap` starts
    from recorder.events import Event
    from recorder.health import HealthConfig
    from recorder.store import Capture

SOURCE = "check"

# Order of observations that share a time, as the recorder emits them live.
_SESSION, _EXCHANGE, _STREAM_OPEN, _RESPONSE, _STREAM, _STREAM_CLOSE, _EXCHANGE_END = range(7)

SortKey = tuple[float, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check found: every flag with whether it was also raised live."""

    path: str
    flags: tuple[Flag, ...]
    seen_live: tuple[bool, ...]
    sessions: tuple[dict[str, Any], ...]
    end: float | None


# --- Rebuilding the events ---------------------------------------------------------------------


def _request(row: dict[str, Any]) -> Event:
    from recorder.redact import session_param
    from recorder.store import event_rows

    event = event_rows.request_seen(row)
    # Live, a request knows its session only when it names it (the rest learn it later).
    named = any(name.lower() == "mcp-session-id" for name, _ in event.request_headers) \
        or session_param(event.url) is not None
    return event if named else event._replace(session_id=None)


def _tagged(rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], SortKey],
            make: Callable[[dict[str, Any]], Event]) -> Iterator[tuple[SortKey, Event]]:
    for row in rows:
        yield key(row), make(row)


def events(capture: Capture) -> Iterator[Event]:
    """Every fact of a capture as the recorder's events, in time order (no ticks).

    Call events are derived again by recorder.correlate from the messages, in this order,
    with the call ids the recording gave them: the same pairing the live checks were shown.
    """
    from recorder.correlate import Correlator
    from recorder.events import MessageSeen
    from recorder.gaps import CaptureGap
    from recorder.model import REQUEST, RpcMessage
    from recorder.store import event_rows as er

    def sessions() -> Iterator[tuple[SortKey, Event]]:
        for row in capture.health_sessions():
            yield (row["started_at"], _SESSION, row["id"], 0, 0, 0), er.session_opened(row)
            learned = er.session_learned(row, row["started_at"])
            if learned is not None:
                yield (row["started_at"], _SESSION, row["id"], 1, 0, 0), learned

    sources = [
        sessions(),
        _tagged(capture.health_exchanges("started_at"),
                lambda r: (r["started_at"], _EXCHANGE, r["id"], 0, 0, 0), _request),
        _tagged(capture.health_messages(on_streams=False),
                lambda r: (r["t"], _EXCHANGE, r["exchange_id"] or 0, 1, r["id"], 0),
                er.message_seen),
        _tagged(capture.health_streams("opened_at"),
                lambda r: (r["opened_at"], _STREAM_OPEN, r["id"], 0, 0, 0), er.stream_opened),
        _tagged(capture.health_exchanges("response_at"),
                lambda r: (r["response_at"], _RESPONSE, r["id"], 0, 0, 0), er.response_seen),
        _tagged(capture.health_chunks(),
                lambda r: (r["t"], _STREAM, r["stream_id"], 0, r["id"], 0), er.chunk_seen),
        _tagged(capture.health_sse_events(),
                lambda r: (r["t"], _STREAM, r["stream_id"], 1, r["id"], 0), er.sse_seen),
        _tagged(capture.health_messages(on_streams=True),
                lambda r: (r["t"], _STREAM, r["stream_id"] or 0, 1, r["sse_event_id"], 1),
                er.message_seen),
        _tagged(capture.health_streams("closed_at"),
                lambda r: (r["closed_at"], _STREAM_CLOSE, r["id"], 0, 0, 0), er.stream_closed),
        _tagged(capture.health_exchanges("ended_at"),
                lambda r: (r["ended_at"], _EXCHANGE_END, r["id"], 0, 0, 0), er.exchange_ended),
        # What the recording could not keep, where the live checks learned of it.
        _tagged(sorted(capture.gaps(), key=lambda r: (r["ended_at"], r["id"])),
                lambda r: (r["ended_at"], _STREAM, r["stream_id"] or 0, -1, r["id"], 0),
                CaptureGap.from_row),
    ]
    correlator = Correlator()
    for _, event in heapq.merge(*sources, key=lambda item: item[0]):
        yield event
        if type(event) is MessageSeen and event.kind != "invalid":
            message = RpcMessage(event.kind, event.method, event.rpc_id, event.payload,
                                 event.batch_index, event.problem)
            corr = correlator.observe(event.session_id, event.direction, message, event.t,
                                      event.id, (event.call_id or 0)
                                      if event.kind == REQUEST else 0)
            if corr.event is not None:
                yield corr.event


def with_ticks(items: Iterable[Event], interval: float) -> Iterator[Event]:
    """Put a tick every `interval` seconds of capture time between the events."""
    from recorder.events import Tick

    next_tick: float | None = None
    for event in items:
        if next_tick is None:
            next_tick = event.t + interval
        while next_tick <= event.t:
            yield Tick(next_tick)
            next_tick += interval
        yield event


# --- Running ------------------------------------------------------------------------------------


def flag_identity(kind: str, details: Any, ids: tuple[Any, ...]) -> tuple[Any, ...]:
    """Two flags are the same finding when their kind and subject match.

    The subject is the one the detector names in `details["subject"]`; for rows without
    one, the ids the flag points at (stream, call, message, exchange, session)."""
    if isinstance(details, str | bytes):
        try:
            details = orjson.loads(details)
        except orjson.JSONDecodeError:
            details = None
    if isinstance(details, dict) and isinstance(details.get("subject"), str):
        return (kind, details["subject"])
    return (kind, *ids)


def _identity(flag: Flag) -> tuple[Any, ...]:
    return flag_identity(flag.kind, flag.details, (flag.stream_id, flag.call_id,
                                                   flag.message_id, flag.exchange_id,
                                                   flag.session_id))


def stored_config(capture: Capture) -> dict[str, Any]:
    """The live checks' config stored in the capture (unknown options dropped)."""
    from dataclasses import fields

    from recorder.health import HealthConfig

    text = capture.meta().get("health_config")
    if not text:
        return {}
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    known = {f.name for f in fields(HealthConfig)}
    return {k: v for k, v in data.items() if k in known} if isinstance(data, dict) else {}


def run_check(path: str | Path, config: HealthConfig | None = None, *,
              use_stored_config: bool = True) -> tuple[CheckResult, HealthConfig]:
    """Check a capture; returns the result and the config actually used."""
    from recorder.health import HealthConfig, HealthMonitor, config_from_mapping
    from recorder.health.spec.schema import validate_message
    from recorder.store import Capture

    with Capture(path) as capture:
        base = HealthConfig()
        if use_stored_config:
            base = config_from_mapping(stored_config(capture), base)
        used = config or base
        injections = capture.injections()
        used = _with_injected_deadlines(used, injections)
        monitor = HealthMonitor(used, validate=validate_message)
        flags: list[Flag] = []
        end: float | None = None
        for event in with_ticks(events(capture), used.tick_interval):
            flags += monitor.observe(event)
            end = event.t if end is None else max(end, event.t)
        if end is not None:
            flags += monitor.finish(end)
        # The recorder's own flags (capture gaps, an interrupted recording) are facts of the
        # recording, not findings the detectors can re-derive: reported as stored.
        recorded = capture.flags_by_source(gaps.FLAG_SOURCE)
        flags += [_stored_flag(r) for r in recorded]
        live = {flag_identity(r["kind"], r["details"], (r["stream_id"], r["call_id"],
                                                        r["message_id"], r["exchange_id"],
                                                        r["session_id"]))
                for r in [*capture.flags_by_source("live"), *recorded]}
        sessions = tuple(capture.sessions())
        flags = mark_injected(flags, injections)
    seen = tuple(_identity(f) in live for f in flags)
    return CheckResult(str(path), tuple(flags), seen, sessions, end), used


def _with_injected_deadlines(config: HealthConfig,
                             injections: list[dict[str, Any]]) -> HealthConfig:
    """`idle-cut=DURATION` closed streams at DURATION: a deadline idle-timeout-close must know."""
    from dataclasses import replace

    from recorder.faults import FaultSpecError, idle_cut_seconds, parse_fault

    specs = []
    for spec in {row["spec"] for row in injections if row["kind"] == "idle-cut"}:
        try:
            specs.append(parse_fault(spec))
        except FaultSpecError:
            continue
    extra = set(idle_cut_seconds(specs)) - set(config.idle_timeouts)
    if not extra:
        return config
    return replace(config, idle_timeouts=tuple(sorted(set(config.idle_timeouts) | extra)))


def mark_injected(flags: Iterable[Flag], injections: list[dict[str, Any]]) -> list[Flag]:
    """Flags caused by `--fault` get `details.injected` (see recorder.faults.mark_injected)."""
    from recorder.faults import mark_injected as mark

    by_session: dict[Any, list[dict[str, Any]]] = {}
    for row in injections:
        by_session.setdefault(row["session"], []).append(row)
    return [mark(flag, by_session.get(flag.session_id, ())) for flag in flags]


def is_injected(flag: Flag) -> bool:
    from recorder.faults import is_injected as injected

    return injected(flag)


def _stored_flag(row: dict[str, Any]) -> Flag:
    details = row["details"]
    try:
        parsed = orjson.loads(details) if details else {}
    except orjson.JSONDecodeError:
        parsed = {}
    return Flag(row["kind"], row["severity"], row["t"], row["message"],
                stream_id=row["stream_id"], message_id=row["message_id"],
                call_id=row["call_id"], exchange_id=row["exchange_id"],
                details=parsed if isinstance(parsed, dict) else {},
                session_id=row["session_id"])


def store_flags(result: CheckResult) -> int:
    """Replace the capture's check flags with the findings no live flag holds."""
    from recorder.live import flag_row
    from recorder.store import replace_flags

    rows = [flag_row(f, source=SOURCE) for f, live in zip(result.flags, result.seen_live)
            if not live]
    return replace_flags(result.path, SOURCE, rows)


# --- Reports ------------------------------------------------------------------------------------


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _worst_first(result: CheckResult) -> list[tuple[dict[str, Any] | None, list[int]]]:
    """Sessions with their flags (indexes), worst session first, worst flag first."""
    by_session: dict[int | None, list[int]] = {}
    for i, flag in enumerate(result.flags):
        by_session.setdefault(flag.session_id, []).append(i)
    sessions = {s["id"]: s for s in result.sessions}

    def flag_order(i: int) -> tuple[int, float]:
        return (-severity_rank(result.flags[i].severity), result.flags[i].t)

    def session_order(item: tuple[int | None, list[int]]) -> tuple[Any, ...]:
        counts = [sum(1 for i in item[1] if result.flags[i].severity == s)
                  for s in reversed(SEVERITIES)]
        return (*(-c for c in counts), item[0] is None, item[0] or 0)

    ordered = sorted(by_session.items(), key=session_order)
    return [(sessions.get(sid) if sid is not None else None, sorted(idx, key=flag_order))
            for sid, idx in ordered]


def _counts(flags: Iterable[Flag]) -> dict[str, int]:
    counts = dict.fromkeys(reversed(SEVERITIES), 0)
    for flag in flags:
        counts[flag.severity] = counts.get(flag.severity, 0) + 1
    return counts


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _session_title(session: dict[str, Any] | None) -> str:
    if session is None:
        return "Not tied to a session"
    names = [n for n in (session.get("client_name"), session.get("server_name")) if n]
    peers = f"  ({session.get('client_name') or '?'} -> {session.get('server_name') or '?'})" \
        if names else ""
    return (f"Session {session['id']}  {session['transport']}  {session['server']}"
            f"{session.get('endpoint') or ''}{peers}")


def fails(flag: Flag, fail_on: str, include_injected: bool) -> bool:
    """Does this flag reach `--fail-on`? Injected ones only with `--include-injected`."""
    if is_injected(flag) and not include_injected:
        return False
    return severity_rank(flag.severity) >= severity_rank(fail_on)


def human_report(result: CheckResult, fail_on: str, *, include_injected: bool = False) -> str:
    counts = _counts(result.flags)
    summary = ", ".join(_plural(n, s) for s, n in counts.items() if n) or "no flags"
    sessions = _plural(len(result.sessions), "session")
    lines = [f"ssetap check {result.path}: {sessions}, {summary}"]
    for session, indexes in _worst_first(result):
        start = session["started_at"] if session else min(result.flags[i].t for i in indexes)
        per = _counts(result.flags[i] for i in indexes)
        lines += ["", f"{_session_title(session)}  "
                  + ", ".join(_plural(n, s) for s, n in per.items() if n)]
        for i in indexes:
            flag = result.flags[i]
            live = " (also live)" if result.seen_live[i] else ""
            injected = (f" [injected: {flag.details['injected']['spec']}]"
                        if is_injected(flag) else "")
            lines.append(f"  {flag.severity:<7}  {flag.kind:<19} +{flag.t - start:.3f}s  "
                         f"{flag.message}{live}{injected}")
    failing = sum(1 for f in result.flags if fails(f, fail_on, include_injected))
    ignored = sum(1 for f in result.flags if is_injected(f) and not include_injected
                  and severity_rank(f.severity) >= severity_rank(fail_on))
    note = f" ({ignored} injected, not counted: --include-injected)" if ignored else ""
    lines += ["", f"{_plural(failing, 'flag')} at or above {fail_on}{note}"
              + (" -> exit 1" if failing else "")]
    return "\n".join(lines)


def flag_json(flag: Flag, seen_live: bool) -> dict[str, Any]:
    return {
        "kind": flag.kind, "severity": flag.severity, "at": _iso(flag.t), "t": flag.t,
        "message": flag.message, "session": flag.session_id, "stream": flag.stream_id,
        "call": flag.call_id, "message_id": flag.message_id, "exchange": flag.exchange_id,
        "details": flag.details, "seen_live": seen_live, "injected": is_injected(flag),
    }


def json_report(result: CheckResult, config: HealthConfig, fail_on: str, failed: bool,
                stored: bool) -> dict[str, Any]:
    groups = []
    for session, indexes in _worst_first(result):
        groups.append({
            "session": session["id"] if session else None,
            "key": session["key"] if session else None,
            "transport": session["transport"] if session else None,
            "server": session["server"] if session else None,
            "flags": [flag_json(result.flags[i], result.seen_live[i]) for i in indexes],
        })
    return {
        "capture": result.path, "sessions_checked": len(result.sessions),
        "counts": _counts(result.flags), "fail_on": fail_on, "failed": failed,
        "stored": stored, "config": config.to_json(), "sessions": groups,
    }


def junit_report(result: CheckResult, fail_on: str, *, include_injected: bool = False) -> bytes:
    """One test case per session; it fails when one of its flags reaches `fail_on`."""
    from recorder.junit import FAILURE, JunitCase, JunitProblem, JunitSuite, render

    threshold = severity_rank(fail_on)
    cases: list[JunitCase] = []
    seen: set[int | None] = set()
    for session, indexes in _worst_first(result):
        seen.add(session["id"] if session else None)
        lines = [f"[{result.flags[i].severity}] {result.flags[i].kind}: "
                 f"{result.flags[i].message}" for i in indexes]
        bad = [i for i in indexes if severity_rank(result.flags[i].severity) >= threshold
               and fails(result.flags[i], fail_on, include_injected)]
        problem = None
        if bad:
            problem = JunitProblem(
                FAILURE, result.flags[bad[0]].kind,
                f"{_plural(len(bad), 'flag')} at or above {fail_on}",
                "\n".join(lines[indexes.index(i)] for i in bad))
        cases.append(JunitCase("ssetap.check", _session_title(session), problem=problem,
                               system_out="\n".join(lines)))
    cases += [JunitCase("ssetap.check", _session_title(session))
              for session in result.sessions if session["id"] not in seen]
    suite = JunitSuite(f"ssetap check {result.path}", tuple(cases))
    return render("ssetap check", [suite]).encode()
