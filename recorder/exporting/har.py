"""`ssetap export --format har`: HAR 1.2, one entry per HTTP exchange, SSE and MCP in extensions.

Each entry is a standard HAR entry (request, response with the whole body, timings in ms: send
0, wait = time to response headers, receive = headers to last byte) plus custom fields, which
HAR reserves to names starting with `_`:
- `_sseEvents`: the SSE items of the response's stream in arrival order, after Chrome's
  `_webSocketMessages`: `{"time": epoch seconds, "type": "event" | "comment" | "control" |
  "incomplete" | "oversize", "event": type, "id": id, "lastEventId", "retry", "data",
  "start", "end"}` (`start`/`end`: byte offsets of the item in `response.content.text`).
- `_mcpMessages`: the JSON-RPC messages the exchange carried: `{"time", "direction", "kind",
  "id", "method", "call", "sseEvent"}` (`sseEvent`: index into `_sseEvents`; `call` links a
  request, its progress and its answer, across entries).
- `_ssetap`: `{"exchange", "session", "sessionKey", "transport", "clientAddr", "streamed",
  "error"}`.
"""

from __future__ import annotations

import base64
import codecs
import re
import secrets
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from recorder.exporting import ExportOptions
from recorder.exporting.redaction import RowRedaction
from recorder.store import Capture
from recorder.store_archive import (
    exchange_streams,
    messages_by_exchange,
    stream_chunks,
    stream_sse_events,
    table_count,
    table_rows,
)

CREATOR = {"name": "ssetap", "version": "1"}


def started(t: float) -> str:
    """HAR's startedDateTime: ISO 8601 with microseconds (exact enough to import back)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def _ms(start: float | None, end: float | None) -> float:
    if start is None or end is None:
        return -1
    return round(max(end - start, 0.0) * 1000.0, 3)


def _headers(raw: str | None) -> list[dict[str, str]]:
    if not raw:
        return []
    return [{"name": k, "value": v} for k, v in orjson.loads(raw)]


def _content(body: bytes | None, mime: str | None, encoding: str | None) -> dict[str, Any]:
    """HAR content: text when it decodes as UTF-8, else base64 (compression undone first)."""
    data = body or b""
    enc = (encoding or "").strip().lower()
    if data and enc in ("gzip", "x-gzip", "deflate"):
        try:
            data = zlib.decompress(data, wbits=47 if enc != "deflate" else 15)
        except zlib.error:
            pass
    out: dict[str, Any] = {"size": len(data), "mimeType": mime or ""}
    if not data:
        out["text"] = ""
        return out
    try:
        out["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        out["text"] = base64.b64encode(data).decode("ascii")
        out["encoding"] = "base64"
    return out


def _header_value(raw: str | None, name: str) -> str | None:
    for header in _headers(raw):
        if header["name"].lower() == name:
            return header["value"]
    return None


class _MessagesOf:
    """Walks `messages_by_exchange` beside the exchanges (both in ascending exchange id)."""

    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self._rows = rows
        self._next = next(rows, None)

    def take(self, exchange_id: int) -> Iterator[dict[str, Any]]:
        """The messages of one exchange, streamed; consume them before the next exchange."""
        while self._next is not None and (self._next["exchange_id"] or 0) <= exchange_id:
            current = self._next
            self._next = next(self._rows, None)
            if current["exchange_id"] == exchange_id:
                yield current


# Stand-ins for the big parts of an entry: the entry is encoded around them and they are
# streamed in their place, so a stream of a million events is never one object in memory.
# A random tag per run: no recorded text can look like one.
_TAG = secrets.token_hex(8)
_CONTENT, _EVENTS, _MESSAGES = (f"\x00{_TAG}{name}\x00" for name in
                                ("content", "events", "messages"))


def _stand_in(name: str) -> bytes:
    return orjson.dumps(name)


def _stream_text(capture: Capture, stream_id: int, encoding: str | None,
                 redaction: RowRedaction | None) -> Iterator[bytes]:
    """A stream's body as it was parsed: raw chunks in order, inflated when compressed."""
    enc = (encoding or "").strip().lower()
    inflate = zlib.decompressobj(wbits=47 if enc != "deflate" else 15) \
        if enc in ("gzip", "x-gzip", "deflate") else None
    for chunk in stream_chunks(capture, stream_id):
        data = chunk["data"]
        if redaction:
            data = redaction.bytes(data)
        if inflate is not None:
            try:
                data = inflate.decompress(data)
            except zlib.error:
                inflate = None  # not what it claimed: the bytes as they are
        if data:
            yield data


def _write_stream_content(out: IO[bytes], pieces: Any, mime: str | None) -> None:
    """HAR content for a stream body, written piece by piece (two passes over the chunks:
    the first checks it is UTF-8 and sizes it; binary bodies go base64, whole)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    try:
        for piece in pieces():
            decoder.decode(piece)
            size += len(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        data = b"".join(pieces())
        out.write(orjson.dumps({"size": len(data), "mimeType": mime or "",
                                "text": base64.b64encode(data).decode("ascii"),
                                "encoding": "base64"}))
        return
    out.write(b'{"size":' + str(size).encode() + b',"mimeType":' + orjson.dumps(mime or "")
              + b',"text":"')
    decoder = codecs.getincrementaldecoder("utf-8")()
    for piece in pieces():
        text = decoder.decode(piece)
        if text:
            out.write(orjson.dumps(text)[1:-1])
    out.write(b'"}')


def _write_events(out: IO[bytes], items: Iterator[dict[str, Any]], index: dict[int, int],
                  redaction: RowRedaction | None) -> None:
    out.write(b"[")
    for n, item in enumerate(items):
        if redaction:
            item = redaction.row("sse_events", item)
        index[item["id"]] = n
        event = {"time": item["t"], "type": item["kind"], "start": item["start"],
                 "end": item["end"]}
        for key, column in (("event", "type"), ("id", "event_id"),
                            ("lastEventId", "last_event_id"), ("retry", "retry"),
                            ("data", "data")):
            if item[column] is not None:
                event[key] = item[column]
        out.write((b"," if n else b"") + orjson.dumps(event))
    out.write(b"]")


def _write_messages(out: IO[bytes], carried: Iterator[dict[str, Any]],
                    index: dict[int, int]) -> None:
    out.write(b"[")
    for n, m in enumerate(carried):
        message = {"time": m["t"], "direction": m["direction"], "kind": m["kind"],
                   "id": orjson.loads(m["rpc_id"]) if m["rpc_id"] else None,
                   "method": m["method"], "call": m["call_id"],
                   "sseEvent": index.get(m["sse_event_id"])}
        out.write((b"," if n else b"") + orjson.dumps(message))
    out.write(b"]")


def write_entry(out: IO[bytes], capture: Capture, exchange: dict[str, Any],
                sessions: dict[int, dict[str, Any]], redaction: RowRedaction | None,
                carried: Iterator[dict[str, Any]]) -> None:
    """One HAR entry for one exchange row, streamed to `out`."""
    if redaction:
        exchange = redaction.row("exchanges", exchange)
    streams = exchange_streams(capture, exchange["id"])
    stream = streams[0] if streams else None  # an exchange carries at most one stream
    request_body = exchange["request_body"]
    url = exchange["url"]
    request: dict[str, Any] = {
        "method": exchange["method"], "url": url, "httpVersion": "HTTP/1.1",
        "headers": _headers(exchange["request_headers"]), "cookies": [],
        "queryString": [{"name": k, "value": v}
                        for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)],
        "headersSize": -1, "bodySize": len(request_body) if request_body else 0,
    }
    if request_body:
        content = _content(request_body, exchange["request_content_type"], None)
        request["postData"] = {"mimeType": content["mimeType"], "text": content["text"],
                               **({"encoding": "base64"} if "encoding" in content else {})}
    encoding = _header_value(exchange["response_headers"], "content-encoding")
    status = exchange["status"]
    body = exchange["response_body"]
    response = {
        "status": status or 0, "statusText": exchange["reason"] or "",
        "httpVersion": "HTTP/1.1" if status else "", "cookies": [],
        "headers": _headers(exchange["response_headers"]),
        "content": _CONTENT if stream else _content(body, exchange["response_content_type"],
                                                    encoding),
        "redirectURL": "", "headersSize": -1,
        "bodySize": int(stream["bytes"]) if stream else (len(body) if body else 0),
    }
    end = exchange["ended_at"]
    session = sessions.get(exchange["session_id"]) if exchange["session_id"] else None
    entry: dict[str, Any] = {
        "startedDateTime": started(exchange["started_at"]),
        "time": _ms(exchange["started_at"], end) if end is not None else 0,
        "request": request, "response": response, "cache": {},
        "timings": {"send": 0, "wait": _ms(exchange["started_at"], exchange["response_at"]),
                    "receive": _ms(exchange["response_at"], end)},
        "_ssetap": {"exchange": exchange["id"], "session": exchange["session_id"],
                    "sessionKey": session["key"] if session else None,
                    "transport": session["transport"] if session else None,
                    "clientAddr": exchange["client_addr"], "streamed": stream is not None,
                    "error": exchange["error"]},
    }
    if stream:
        entry["_sseEvents"] = _EVENTS
    entry["_mcpMessages"] = _MESSAGES
    encoded = orjson.dumps(entry)
    index: dict[int, int] = {}
    for part in re.split(b"(" + b"|".join(re.escape(_stand_in(n)) for n in
                                          (_CONTENT, _EVENTS, _MESSAGES)) + b")", encoded):
        if part == _stand_in(_CONTENT) and stream:
            _write_stream_content(
                out, lambda: _stream_text(capture, stream["id"], encoding, redaction),
                exchange["response_content_type"])
        elif part == _stand_in(_EVENTS) and stream:
            _write_events(out, stream_sse_events(capture, stream["id"]), index, redaction)
        elif part == _stand_in(_MESSAGES):
            _write_messages(out, carried, index)
        else:
            out.write(part)


def export(capture: Capture, out: IO[bytes], options: ExportOptions) -> int:
    """Write one HAR document; entries are encoded one at a time (the capture is not held)."""
    redaction = RowRedaction(options.redactor) if options.redactor else None
    sessions = {}
    for s in table_rows(capture, "sessions", options.session_id):
        sessions[s["id"]] = redaction.row("sessions", s) if redaction else s
    total = table_count(capture, "exchanges", options.session_id)
    out.write(b'{"log":{"version":"1.2","creator":' + orjson.dumps(CREATOR) + b',"pages":[],'
              b'"entries":[')
    count = 0
    carried = _MessagesOf(messages_by_exchange(capture, options.session_id))
    for exchange in table_rows(capture, "exchanges", options.session_id):
        if count:
            out.write(b",")
        out.write(b"\n")
        write_entry(out, capture, exchange, sessions, redaction, carried.take(exchange["id"]))
        count += 1
        if options.progress and count % 1000 == 0:
            options.progress(count, total)
    out.write(b"\n]}}\n")
    if options.progress:
        options.progress(count, total)
    return count
