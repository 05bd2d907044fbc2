"""`ssetap import` of mitmproxy flow files (`mitmdump -w`), read with mitmproxy's own reader.

Each HTTP flow becomes the raw facts the recorder's addon would have shipped: the request at
`timestamp_start`, response headers at the response's `timestamp_start`, the body as one
chunk at its `timestamp_end` (mitmproxy keeps whole bodies, so every SSE event of a stream is
timed at the stream's end), then the end or the flow's error. Bodies are stored encoded as
they came (`raw_content`), like a recording. A streamed body is not kept in flow files unless an
addon put it back; such a flow imports with its headers only.

mitmproxy is imported lazily here (an allowed boundary in tests/test_layering.py): only an
import of a flow file loads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from recorder.formats import BY_NAME, FormatError
from recorder.importing import ImportSummary, ingest_events
from recorder.ingest import RawEvent

_FIRST_KEY = re.compile(rb"^\d{1,4}:[A-Za-z_]+;")


def sniff(head: bytes) -> bool:
    # A flow file is a sequence of tnetstrings, each a dict (`<length>:<items>}`) of a flow's
    # state whose keys are strings (`9:websocket;`). A flow bigger than the head (a large body)
    # is recognised by its length prefix and its first key.
    length, sep, rest = head.partition(b":")
    if not sep or not length.isdigit() or len(length) > 12:
        return False
    end = len(length) + 1 + int(length)
    if end < len(head):
        return head[end:end + 1] == b"}" and bool(_FIRST_KEY.match(rest))
    return bool(_FIRST_KEY.match(rest))


def flow_events(flow: Any, order: int) -> list[tuple[float, int, RawEvent]]:
    """The raw facts of one mitmproxy HTTPFlow, each with its time and order."""
    req = flow.request
    t0 = float(req.timestamp_start)
    peer = flow.client_conn.peername if flow.client_conn else None
    client = f"{peer[0]}:{peer[1]}" if peer else ""
    flow_id = str(flow.id)
    events: list[tuple[float, int, RawEvent]] = [
        (t0, order, ("q", flow_id, t0, req.method, req.url, req.http_version,
                     list(req.headers.items(multi=True)), req.raw_content, client))]
    resp = flow.response
    if resp is not None:
        t_headers = float(resp.timestamp_start or t0)
        t_end = float(resp.timestamp_end or t_headers)
        events.append((t_headers, order + 1, ("h", flow_id, t_headers, resp.status_code,
                                              resp.reason, list(resp.headers.items(multi=True)),
                                              True)))
        if resp.raw_content:
            events.append((t_end, order + 2, ("c", flow_id, t_end, resp.raw_content)))
        if flow.error is None:
            events.append((t_end, order + 3, ("e", flow_id, t_end, None)))
    if flow.error is not None:
        t_error = float(flow.error.timestamp or t0)
        events.append((t_error, order + 4, ("x", flow_id, t_error, flow.error.msg)))
    return events


def load(path: Path, db: Path, *, raw: bool = False) -> ImportSummary:
    from mitmproxy import http
    from mitmproxy.exceptions import FlowReadException
    from mitmproxy.io import FlowReader

    events: list[tuple[float, int, RawEvent]] = []
    flows = 0
    with open(path, "rb") as f:
        try:
            for flow in FlowReader(f).stream():
                if isinstance(flow, http.HTTPFlow):
                    events += flow_events(flow, flows * 10)
                    flows += 1
        except FlowReadException as exc:
            raise FormatError(f"{path}: not a readable mitmproxy flow file ({exc})") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise FormatError(f"{path}: damaged mitmproxy flow file ({exc})") from None
    if not flows:
        raise FormatError(f"{path}: no HTTP flows in this mitmproxy flow file")
    sessions, messages = ingest_events(db, events, raw=raw, source=f"mitmproxy:{path.name}")
    return ImportSummary("mitmproxy", flows, sessions, messages,
                         approximate=BY_NAME["mitmproxy"].approximate)
