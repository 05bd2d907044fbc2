"""`ssetap import` of HAR 1.2 files: mitmproxy's `hardump`, browsers' devtools, `ssetap export`.

Each entry becomes the raw facts of one exchange (request at `startedDateTime`, response
headers after `timings.wait`, the body, the end after `time`), fed through the recording core.
How exact the times are depends on the writer:
- ssetap's own HAR carries `_sseEvents` with each event's time and byte offsets: the body is
  cut into one chunk per event, at the event's time, so SSE events and messages keep their times.
- ssetap's `_mcpMessages` time a JSON answer's body (its last byte).
- Other HARs hold the body whole: it arrives as one chunk at the response's end, so every SSE
  event of a stream is timed at its end (heartbeat gaps and stream timing are lost).
HAR times have millisecond precision (microseconds when ssetap wrote them). A HAR carries no
client address; ssetap's `_ssetap.clientAddr` is used when present.
"""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from recorder.formats import BY_NAME, FormatError
from recorder.importing import ImportSummary, ingest_events
from recorder.ingest import RawEvent


def sniff(head: bytes) -> bool:
    text = head.lstrip()[:4096]
    return text.startswith(b"{") and b'"log"' in text and (
        b'"entries"' in text or b'"creator"' in text or b'"version"' in text)


def _time(value: Any, where: str) -> float:
    if not isinstance(value, str):
        raise FormatError(f"{where}: startedDateTime missing")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise FormatError(f"{where}: startedDateTime {value!r} is not ISO 8601") from None


def _ms(value: Any) -> float:
    return float(value) / 1000.0 if isinstance(value, (int, float)) and value > 0 else 0.0


def _headers(items: Any) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        return []
    return [(str(h["name"]), str(h.get("value", ""))) for h in items
            if isinstance(h, dict) and "name" in h]


def _text(holder: Any) -> bytes | None:
    if not isinstance(holder, dict) or not isinstance(holder.get("text"), str):
        return None
    if holder.get("encoding") == "base64":
        try:
            return base64.b64decode(str(holder["text"]))
        except ValueError:
            return None
    return str(holder["text"]).encode("utf-8")


def entry_events(entry: dict[str, Any], flow_id: str, where: str
                 ) -> list[tuple[float, int, RawEvent]]:
    """The raw facts of one HAR entry, each with its time and order within the entry."""
    request = entry.get("request")
    response = entry.get("response")
    if not isinstance(request, dict) or "url" not in request or "method" not in request:
        raise FormatError(f"{where}: an entry without a request method and url")
    t0 = _time(entry.get("startedDateTime"), where)
    found = entry.get("timings")
    timings: dict[str, Any] = found if isinstance(found, dict) else {}
    pre = sum((_ms(timings.get(k)) for k in ("blocked", "dns", "connect", "send")), 0.0)
    t_headers = t0 + pre + _ms(timings.get("wait"))
    total = entry.get("time")
    t_end = t0 + _ms(total) if isinstance(total, (int, float)) and total > 0 else \
        t_headers + _ms(timings.get("receive"))
    t_end = max(t_end, t_headers)
    found = entry.get("_ssetap")
    own: dict[str, Any] = found if isinstance(found, dict) else {}
    client = str(own.get("clientAddr") or "")
    events: list[tuple[float, int, RawEvent]] = [
        (t0, 0, ("q", flow_id, t0, str(request["method"]), str(request["url"]),
                 str(request.get("httpVersion") or "HTTP/1.1"), _headers(request.get("headers")),
                 _text(request.get("postData")), client))]
    status = response.get("status") if isinstance(response, dict) else None
    if not isinstance(status, int) or status <= 0:
        # No response: the exchange failed (devtools writes status 0).
        message = str(own.get("error") or entry.get("_error") or "no response")
        events.append((t_end, 1, ("x", flow_id, t_end, message)))
        return events
    assert isinstance(response, dict)
    events.append((t_headers, 1, ("h", flow_id, t_headers, status,
                                  str(response.get("statusText") or ""),
                                  _headers(response.get("headers")), True)))
    body = _text(response.get("content")) or b""
    sse = entry.get("_sseEvents")
    order = 2
    if isinstance(sse, list) and sse and body:
        position = 0
        for item in sse:
            end = item.get("end") if isinstance(item, dict) else None
            t = item.get("time") if isinstance(item, dict) else None
            if not isinstance(end, int) or not isinstance(t, (int, float)) or end <= position:
                continue
            events.append((float(t), order, ("c", flow_id, float(t), body[position:end])))
            position, order = end, order + 1
        if position < len(body):
            events.append((t_end, order, ("c", flow_id, t_end, body[position:])))
            order += 1
    elif body:
        # ssetap's `_mcpMessages` remember when a JSON answer's last byte came; else the end.
        answered = [m["time"] for m in entry.get("_mcpMessages") or ()
                    if isinstance(m, dict) and m.get("direction") == "s2c"
                    and isinstance(m.get("time"), (int, float))]
        t_body = float(max(answered)) if answered else t_end
        events.append((t_body, order, ("c", flow_id, t_body, body)))
        order += 1
    error = own.get("error")
    if error:
        events.append((t_end, order, ("x", flow_id, t_end, str(error))))
    else:
        events.append((t_end, order, ("e", flow_id, t_end, None)))
    return events


def load(path: Path, db: Path, *, raw: bool = False) -> ImportSummary:
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"{path}: not a HAR file (not JSON: {exc})") from None
    log = document.get("log") if isinstance(document, dict) else None
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        raise FormatError(f"{path}: not a HAR file (no log.entries)")
    events: list[tuple[float, int, RawEvent]] = []
    for number, entry in enumerate(log["entries"]):
        if not isinstance(entry, dict):
            raise FormatError(f"{path}: entry {number} is not an object")
        for t, order, event in entry_events(entry, f"har-{number}", f"{path}: entry {number}"):
            events.append((t, number * 100_000 + order, event))
    sessions, messages = ingest_events(db, events, raw=raw, source=f"har:{path.name}")
    exact = any(isinstance(e.get("_sseEvents"), list) for e in log["entries"]
                if isinstance(e, dict))
    return ImportSummary("har", len(log["entries"]), sessions, messages,
                         approximate="" if exact and not _foreign(log) else
                         BY_NAME["har"].approximate)


def _foreign(log: dict[str, Any]) -> bool:
    creator = log.get("creator")
    return not (isinstance(creator, dict) and creator.get("name") == "ssetap")
