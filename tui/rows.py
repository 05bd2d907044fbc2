"""Timeline rows for display: capture rows in, `Entry` values out (no Textual here).

Loading runs in worker threads: it reads rows by id through a `BrowseReader` and does the
JSON parsing there, so the UI thread only lays out text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from recorder.model import C2S, ERROR, INVALID, NOTIFICATION, REQUEST, RESULT, S2C
from recorder.store import BrowseReader
from tui.timeline_index import (
    CAPTURE_GAP,
    EXCHANGE,
    MESSAGE,
    SSE,
    STREAM_CLOSE,
    STREAM_OPEN,
    RowKey,
)

PREVIEW = 160  # characters of params/result shown in a row


@dataclass(frozen=True, slots=True)
class Entry:
    """One loaded timeline row, ready to lay out.

    `badge` names the row kind in four or five letters and `tone` picks its colour; `linked`
    is the row at the other end of a call (the response of a request, the request of
    anything else that belongs to a call).
    """

    key: RowKey
    t: float
    direction: str | None
    badge: str
    tone: str
    text: str
    note: str = ""
    note_tone: str = ""
    call_id: int | None = None
    linked: RowKey | None = None
    stream_id: int | None = None
    exchange_id: int | None = None
    sse_event_id: int | None = None
    nested: bool = False


# --- Small formatters ---------------------------------------------------------------------------


def format_ms(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    return f"{value / 60_000:.1f} min"


def format_offset(seconds: float) -> str:
    """Time since the session started: +12.345s up to 1000 s, then +16m40s, +1h02m03."""
    if seconds < 0:
        return f"-{abs(seconds):.3f}s"
    if seconds < 1000:
        return f"+{seconds:.3f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"+{hours}h{minutes:02d}m{secs:02d}" if hours else f"+{minutes}m{secs:02d}s"


def format_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 10_000:
        return f"{size} B"
    if size < 10_000_000:
        return f"{size / 1000:.0f} kB"
    return f"{size / 1e6:.0f} MB"


def compact(value: Any, limit: int = PREVIEW) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse(row: dict[str, Any]) -> Any:
    """The message payload, or None when it was cut for preview or is not JSON."""
    head = row.get("json_head")
    if head is None or (row.get("json_len") or 0) > len(head):
        return None
    try:
        return orjson.loads(head)
    except orjson.JSONDecodeError:
        return None


# --- Messages ------------------------------------------------------------------------------------


def _outcome_note(row: dict[str, Any]) -> tuple[str, str]:
    outcome = row.get("outcome")
    latency = format_ms(row.get("latency_ms"))
    progress = f"{row['progress_count']}× prog " if row.get("progress_count") else ""
    if outcome == RESULT:
        return f"{progress}{latency} ✓" + (" late" if row.get("late") else ""), "good"
    if outcome == ERROR:
        return f"{progress}{latency} ✗ {row.get('error_code')}", "bad"
    if outcome == "cancelled":
        return f"{progress}cancelled", "warn"
    if outcome == "pending":
        return f"{progress}pending…", "warn"
    return "", ""


def _request_text(method: str, name: str | None, payload: Any, row: dict[str, Any]) -> str:
    params = payload.get("params") if isinstance(payload, dict) else None
    if method == "tools/call" and isinstance(params, dict) and "arguments" in params:
        preview = compact(params.get("arguments"))
    elif isinstance(params, dict) and params:
        preview = compact({k: v for k, v in params.items() if k != "_meta"} or params)
    elif payload is None and row.get("json_head"):
        preview = compact(row["json_head"])
    else:
        preview = ""
    label = f"{method} {name}" if name else method
    return f"{label}  {preview}".rstrip()


def _result_text(payload: Any, row: dict[str, Any]) -> str:
    method = row.get("call_method") or "?"
    name = row.get("call_name")
    label = f"{method} {name}" if name else method
    if not isinstance(payload, dict):
        return f"{label}  {compact(row.get('json_head') or '')}"
    if "error" in payload and isinstance(payload["error"], dict):
        error = payload["error"]
        return f"{label}  error {error.get('code')}: {compact(error.get('message', ''))}"
    result = payload.get("result")
    if isinstance(result, dict):
        content = result.get("content")
        if isinstance(content, list) and content and isinstance(content[0], dict):
            text = content[0].get("text")
            flag = "isError " if result.get("isError") else ""
            if isinstance(text, str):
                return f"{label}  {flag}{compact(text)}"
        if result.get("isError"):
            return f"{label}  isError {compact(result)}"
    return f"{label}  {compact(result)}"


def message_entry(row: dict[str, Any]) -> Entry:
    kind = row["kind"]
    payload = _parse(row)
    rpc = row.get("rpc_id") or row.get("call_rpc_id")
    hashed = f"#{rpc} " if rpc is not None else ""
    linked: RowKey | None = None
    common: dict[str, Any] = {
        "key": (MESSAGE, row["id"]), "t": row["t"], "direction": row["direction"],
        "call_id": row.get("call_id"), "stream_id": row.get("stream_id"),
        "exchange_id": row.get("exchange_id"), "sse_event_id": row.get("sse_event_id"),
    }
    if kind == REQUEST:
        note, tone = _outcome_note(row) if row.get("call_id") else ("", "")
        if row.get("response_message_id"):
            linked = (MESSAGE, row["response_message_id"])
        return Entry(badge="REQ", tone="request", linked=linked, note=note, note_tone=tone,
                     text=hashed + _request_text(row.get("method") or "?", row.get("call_name"),
                                                 payload, row), **common)
    if kind in (RESULT, ERROR):
        if row.get("request_message_id"):
            linked = (MESSAGE, row["request_message_id"])
        note = format_ms(row.get("latency_ms")) if row.get("call_id") else "no request"
        return Entry(badge="RES" if kind == RESULT else "ERR",
                     tone="result" if kind == RESULT else "error", linked=linked, note=note,
                     note_tone="" if row.get("call_id") else "warn",
                     text=hashed + _result_text(payload, row), **common)
    if kind == NOTIFICATION:
        method = row.get("method") or "?"
        params = payload.get("params") if isinstance(payload, dict) else None
        params = params if isinstance(params, dict) else {}
        if row.get("request_message_id"):
            linked = (MESSAGE, row["request_message_id"])
        of_call = f"#{row['call_rpc_id']} " if row.get("call_rpc_id") is not None else ""
        if method == "notifications/progress":
            total = params.get("total")
            done = f"{params.get('progress')}" + (f"/{total}" if total is not None else "")
            message = params.get("message")
            text = f"↳ {of_call}progress {done}" + (f"  {message}" if message else "")
            return Entry(badge="PROG", tone="notification", text=text, linked=linked,
                         nested=True, **common)
        if method == "notifications/cancelled":
            reason = params.get("reason")
            text = f"⊘ cancel {of_call or compact(params.get('requestId', '?')) + ' '}" + \
                   (f"reason: {reason}" if reason else "")
            return Entry(badge="CANC", tone="warn", text=text.rstrip(), linked=linked,
                         nested=True, **common)
        preview = compact(params) if params else ""
        return Entry(badge="NOTE", tone="notification", text=f"{method}  {preview}".rstrip(),
                     linked=linked, **common)
    if kind == INVALID:
        return Entry(badge="BAD", tone="error", text=f"invalid JSON-RPC: {row.get('problem')}",
                     **common)
    return Entry(badge=kind[:4].upper(), tone="", text=compact(row.get("json_head") or ""),
                 **common)


# --- The wire around messages ----------------------------------------------------------------


def exchange_entry(row: dict[str, Any]) -> Entry:
    status = row.get("status")
    ctype = (row.get("response_content_type") or "").split(";")[0]
    shown = f"→ {status} {row.get('reason') or ''}".rstrip() if status is not None else "→ …"
    if ctype:
        shown += f"  {ctype}"
    if row.get("error"):
        shown += f"  ({row['error']})"
    started: float = row["started_at"]
    ended = row.get("ended_at")
    note = format_ms((ended - started) * 1000) if ended is not None else ""
    tone = "bad" if row.get("error") or (status or 0) >= 400 else ""
    size = row.get("request_size")
    body = f"  {format_bytes(size)}" if size else ""
    return Entry(key=(EXCHANGE, row["id"]), t=started, direction=C2S, badge="HTTP",
                 tone="http", text=f"{row['method']} {row['path']}{body} {shown}", note=note,
                 note_tone=tone, exchange_id=row["id"])


def stream_open_entry(row: dict[str, Any]) -> Entry:
    resumed = f" resuming after {row['last_event_id_sent']!r}" if row.get(
        "last_event_id_sent") else ""
    return Entry(key=(STREAM_OPEN, row["id"]), t=row["opened_at"], direction=S2C, badge="OPEN",
                 tone="stream", text=f"SSE stream {row['id']} opened ({row['role']} "
                 f"{row['method']}){resumed}", stream_id=row["id"],
                 exchange_id=row.get("exchange_id"))


def stream_close_entry(row: dict[str, Any]) -> Entry:
    lived = None
    if row.get("closed_at") is not None:
        lived = (row["closed_at"] - row["opened_at"]) * 1000
    reason = row.get("close_reason") or "open"
    truncated = " truncated" if row.get("truncated") else ""
    text = (f"SSE stream {row['id']} closed: {reason}{truncated} · {row['events']} events, "
            f"{row['comments']} comments, {format_bytes(row['bytes'])}, max gap "
            f"{format_ms(row.get('max_gap_ms')) or '-'}")
    tone = "bad" if reason not in ("end", "recorder-stop") or truncated else ""
    return Entry(key=(STREAM_CLOSE, row["id"]), t=row.get("closed_at") or row["opened_at"],
                 direction=S2C, badge="CLOSE", tone="stream", text=text,
                 note=f"lived {format_ms(lived)}" if lived is not None else "", note_tone=tone,
                 stream_id=row["id"], exchange_id=row.get("exchange_id"))


def sse_entry(row: dict[str, Any]) -> Entry:
    kind = row["kind"]
    common: dict[str, Any] = {"key": (SSE, row["id"]), "t": row["t"], "direction": S2C,
                              "stream_id": row["stream_id"], "sse_event_id": row["id"]}
    if kind == "comment":
        return Entry(badge="BEAT", tone="heartbeat",
                     text=f": {compact(row.get('data') or '')}  (stream {row['stream_id']})",
                     **common)
    if kind == "event":
        return Entry(badge="SSE", tone="stream",
                     text=f"event {row.get('type')}: {compact(row.get('data') or '')}", **common)
    if kind == "control":
        parts = [f"{name} {row[name]!r}" for name in ("event_id", "retry")
                 if row.get(name) is not None]
        return Entry(badge="SSE", tone="stream", text="control block: " + (", ".join(parts)
                                                                         or "nothing set"),
                     **common)
    size = row["end"] - row["start"]
    what = ("incomplete event at end of stream" if kind == "incomplete"
            else "line over the parser's bound, skipped")
    return Entry(badge="SSE", tone="error", text=f"{what} ({size} bytes)", **common)


def capture_gap_entry(row: dict[str, Any]) -> Entry:
    """Data that crossed the wire but is not in the capture (shed, lost, not written)."""
    events = "" if row.get("events") is None else f", {row['events']:,} SSE events"
    where = f" of stream {row['stream_id']}" if row.get("stream_id") is not None else ""
    lasted = (row["ended_at"] - row["started_at"]) * 1000
    return Entry(key=(CAPTURE_GAP, row["id"]), t=row["started_at"], direction=S2C, badge="LOST",
                 tone="error", text=f"not recorded ({row['reason']}): "
                 f"{format_bytes(row['bytes'])}, {row['chunks']:,} chunks{events}{where}",
                 note=f"over {format_ms(lasted)}", note_tone="bad",
                 stream_id=row.get("stream_id"), exchange_id=row.get("exchange_id"))


def load_entries(reader: BrowseReader, keys: Sequence[RowKey]) -> list[Entry]:
    """Load the rows behind `keys` (gap rows excluded), one query per source."""
    wanted: dict[int, list[int]] = {}
    for source, row_id in keys:
        wanted.setdefault(source, []).append(row_id)
    entries: list[Entry] = []
    if MESSAGE in wanted:
        entries += [message_entry(r) for r in reader.message_rows(wanted[MESSAGE])]
    if EXCHANGE in wanted:
        entries += [exchange_entry(r) for r in reader.exchange_rows(wanted[EXCHANGE])]
    streams = sorted(set(wanted.get(STREAM_OPEN, [])) | set(wanted.get(STREAM_CLOSE, [])))
    if streams:
        for row in reader.stream_rows(streams):
            if row["id"] in wanted.get(STREAM_OPEN, ()):
                entries.append(stream_open_entry(row))
            if row["id"] in wanted.get(STREAM_CLOSE, ()):
                entries.append(stream_close_entry(row))
    if SSE in wanted:
        entries += [sse_entry(r) for r in reader.sse_rows(wanted[SSE])]
    if CAPTURE_GAP in wanted:
        entries += [capture_gap_entry(r) for r in reader.capture_gap_rows(wanted[CAPTURE_GAP])]
    return entries
