"""Shape capture rows into ssetap's stable JSON and into tables for people (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(t: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, or None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def session_json(row: dict[str, Any]) -> dict[str, Any]:
    """One session as `ssetap sessions --json` prints it (a stable interface)."""
    return {
        "id": row["id"],
        "key": row["key"],
        "transport": row["transport"],
        "server": row["server"],
        "endpoint": row["endpoint"],
        "client": row["client_name"],
        "client_version": row["client_version"],
        "server_name": row["server_name"],
        "server_version": row["server_version"],
        "protocol_version": row["protocol_version"],
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "messages": row["messages"],
        "requests": row["requests"],
        "answered": row["answered"],
        "pending": row["pending"],
        "flags": row["flags"],
        "flags_by_severity": {"error": row["flag_errors"], "warning": row["flag_warnings"],
                              "info": row["flag_infos"]},
        "gaps": row.get("gaps", 0),
    }


def gap_json(row: dict[str, Any]) -> dict[str, Any]:
    """One capture gap (recorder.gaps) as `show --json` prints it."""
    return {
        "id": row["id"], "reason": row["reason"], "stream_id": row["stream_id"],
        "exchange_id": row["exchange_id"], "start_offset": row["start_offset"],
        "end_offset": row["end_offset"], "bytes": row["bytes"], "chunks": row["chunks"],
        "events": row["events"], "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
    }


def call_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["rpc_id"],
        "call": row["id"],
        "direction": row["direction"],
        "method": row["method"],
        "name": row["name"],
        "sent_at": iso(row["sent_at"]),
        "answered_at": iso(row["answered_at"]),
        "latency_ms": row["latency_ms"],
        "outcome": row["outcome"],
        "error_code": row["error_code"],
        "error_message": row["error_message"],
        "progress": row["progress_count"],
        "late": bool(row["late"]),
    }


def stream_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "method": row["method"],
        "role": row["role"],
        "opened_at": iso(row["opened_at"]),
        "closed_at": iso(row["closed_at"]),
        "close_reason": row["close_reason"],
        "events": row["events"],
        "comments": row["comments"],
        "bytes": row["bytes"],
        "max_gap_ms": row["max_gap_ms"],
        "truncated": bool(row["truncated"]),
    }


def flag_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": row["kind"], "severity": row["severity"], "at": iso(row["t"]),
        "message": row["message"], "session": row["session_id"], "stream": row["stream_id"],
        "call": row["call_id"], "message_id": row["message_id"],
    }


def duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(end - start, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def table(headers: list[str], body: list[list[Any]]) -> str:
    """A plain text table with columns sized to their content."""
    cells = [[("" if c is None else str(c)) for c in r] for r in body]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def sessions_table(sessions: list[dict[str, Any]]) -> str:
    body = []
    for s in sessions:
        started = iso(s["started_at"])
        body.append([
            s["id"], s["transport"], s["client_name"] or "-", s["protocol_version"] or "-",
            started[11:23] if started else "-", duration(s["started_at"], s["ended_at"]),
            s["messages"], s["requests"], s["pending"], _flag_summary(s), s["server"],
        ])
    return table(["ID", "TRANSPORT", "CLIENT", "PROTOCOL", "STARTED", "DURATION", "MSGS",
                  "CALLS", "PENDING", "FLAGS", "SERVER"], body)


def _flag_summary(s: dict[str, Any]) -> str:
    parts = []
    for key, letter in (("flag_errors", "E"), ("flag_warnings", "W"), ("flag_infos", "I")):
        if s.get(key):
            parts.append(f"{s[key]}{letter}")
    if s.get("gaps"):
        parts.append(f"({s['gaps']} gap{'s' if s['gaps'] != 1 else ''})")
    return " ".join(parts) or "-"


def show_text(session: dict[str, Any], calls: list[dict[str, Any]],
              streams: list[dict[str, Any]], flags: list[dict[str, Any]],
              gaps: list[dict[str, Any]] | None = None) -> str:
    start = session["started_at"]
    out = [
        f"Session {session['id']}  {session['transport']}  {session['server']}"
        f"{session['endpoint'] or ''}",
        f"  client {session['client_name'] or '-'} {session['client_version'] or ''}  server "
        f"{session['server_name'] or '-'} {session['server_version'] or ''}  protocol "
        f"{session['protocol_version'] or '-'}",
        f"  {iso(start)} for {duration(start, session['ended_at'])}; {session['messages']} "
        f"messages, {session['requests']} calls, {session['pending']} pending, "
        f"{session['flags']} flags"
        + (f", {len(gaps)} capture gaps (data missing from the capture)" if gaps else ""),
        "",
        "Calls",
        table(["AT", "DIR", "ID", "METHOD", "NAME", "LATENCY", "OUTCOME", "PROGRESS"], [
            [f"+{c['sent_at'] - start:.3f}s", c["direction"], c["rpc_id"], c["method"],
             c["name"] or "", ms(c["latency_ms"]),
             c["outcome"] + (" (late)" if c["late"] else "")
             + (f" {c['error_code']}" if c["error_code"] is not None else ""),
             c["progress_count"] or ""]
            for c in calls
        ]),
        "",
        "Streams",
        table(["ID", "OPENED", "METHOD", "ROLE", "LIVED", "EVENTS", "COMMENTS", "BYTES",
               "MAX GAP", "CLOSE"], [
            [s["id"], f"+{s['opened_at'] - start:.3f}s", s["method"], s["role"],
             duration(s["opened_at"], s["closed_at"]), s["events"], s["comments"], s["bytes"],
             ms(s["max_gap_ms"]), (s["close_reason"] or "open")
             + (" truncated" if s["truncated"] else "")]
            for s in streams
        ]),
    ]
    if gaps:
        out += ["", "Capture gaps (passed through, not recorded)"]
        out.append(table(["AT", "REASON", "STREAM", "BYTES", "CHUNKS", "EVENTS", "LASTED"], [
            [f"+{g['started_at'] - start:.3f}s", g["reason"], g["stream_id"] or "-", g["bytes"],
             g["chunks"], "?" if g["events"] is None else g["events"],
             duration(g["started_at"], g["ended_at"])] for g in gaps]))
    if flags:
        out += ["", "Flags"]
        out += [f"  [{f['severity']}] {f['kind']} at +{f['t'] - start:.3f}s: {f['message']}"
                for f in flags]
    return "\n".join(out)
