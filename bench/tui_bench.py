"""Benchmark the TUI on a 1,000,000-message capture: first paint, and opening a 500k session.

Usage: python bench/tui_bench.py [--db PATH] [--rebuild]

The capture is synthetic but shaped like real traffic (see `build_capture`) and is written with
`recorder.store.bulk_load`; it is kept at --db between runs (building takes a while). The app
is driven headless through Textual's `run_test`, so the numbers include Textual's own startup
and a real render, not just the queries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from recorder.store import BrowseReader, StoreError, StoreWriter, bulk_load

TOTAL_MESSAGES = 1_000_000
BIG_SESSION_MESSAGES = 500_000
OTHER_SESSIONS = 99
TARGET_SECONDS = 1.0
# Bumped whenever the generator changes, so a stale cached capture is rebuilt.
GENERATOR_VERSION = "3"

_TOOLS = ("echo", "add", "search", "slow", "fetch")


class _Rows:
    """Rows per table, buffered as tuples in column order for `bulk_load`."""

    COLUMNS: ClassVar[dict[str, tuple[str, ...]]] = {
        "sessions": ("id", "key", "transport", "server", "endpoint", "client_name",
                     "client_version", "server_name", "server_version", "protocol_version",
                     "started_at", "ended_at"),
        "exchanges": ("id", "session_id", "method", "url", "path", "status", "reason",
                      "request_headers", "response_headers", "request_body",
                      "request_content_type", "response_content_type", "started_at",
                      "response_at", "ended_at", "streamed", "mcp"),
        "streams": ("id", "exchange_id", "session_id", "method", "role", "opened_at",
                    "first_byte_at", "closed_at", "close_reason", "bytes", "chunks", "events",
                    "comments", "max_gap_ms"),
        "chunks": ("id", "stream_id", "seq", "t", "offset", "data"),
        "sse_events": ("id", "stream_id", "session_id", "t", "kind", "type", "data", "start",
                       "end"),
        "messages": ("id", "session_id", "exchange_id", "stream_id", "sse_event_id", "t",
                     "direction", "kind", "rpc_id", "method", "json", "call_id"),
        "calls": ("id", "session_id", "direction", "rpc_id", "method", "name",
                  "request_message_id", "response_message_id", "sent_at", "answered_at",
                  "latency_ms", "outcome", "error_code", "error_message", "progress_token",
                  "progress_count"),
        "flags": ("id", "session_id", "stream_id", "message_id", "call_id", "t", "kind",
                  "severity", "message"),
    }

    # NOT NULL columns whose schema default an explicit NULL would override.
    DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "exchanges": {"streamed": 0, "mcp": 0},
        "streams": {"bytes": 0, "chunks": 0, "events": 0, "comments": 0},
        "calls": {"progress_count": 0},
    }

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in self.COLUMNS}
        self.next: dict[str, int] = {t: 1 for t in self.COLUMNS}

    def add(self, table: str, **values: Any) -> int:
        row_id = values.setdefault("id", self.next[table])
        for column, default in self.DEFAULTS.get(table, {}).items():
            if values.get(column) is None:
                values[column] = default
        self.next[table] = row_id + 1
        self.rows[table].append(tuple(values.get(c) for c in self.COLUMNS[table]))
        return int(row_id)

    def drain(self) -> Iterator[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        for table, values in self.rows.items():
            if values:
                yield table, self.COLUMNS[table], values
        self.rows = {t: [] for t in self.COLUMNS}


_HEADERS = orjson.dumps([["content-type", "application/json"],
                         ["authorization", "Bearer <redacted:7f3a>"]]).decode()
_SSE_HEADERS = orjson.dumps([["content-type", "text/event-stream"]]).decode()


def _request(method: str, rpc_id: int, name: str | None) -> str:
    params: dict[str, Any] = {}
    if method == "tools/call":
        params = {"name": name, "arguments": {"text": f"query {rpc_id}", "n": rpc_id % 97}}
    return orjson.dumps({"jsonrpc": "2.0", "id": rpc_id, "method": method,
                         "params": params}).decode()


def _result(rpc_id: int, error: bool) -> str:
    if error:
        return orjson.dumps({"jsonrpc": "2.0", "id": rpc_id,
                             "error": {"code": -32603, "message": "internal error"}}).decode()
    return orjson.dumps({"jsonrpc": "2.0", "id": rpc_id, "result": {
        "content": [{"type": "text", "text": f"result {rpc_id} " + "x" * (rpc_id % 40)}]}}).decode()


def _big_session(out: _Rows, rng: random.Random, t0: float) -> None:
    """Legacy HTTP+SSE: one GET stream carries every response; each request is its own POST."""
    sid = out.add("sessions", key="legacy:big", transport="sse", server="http://127.0.0.1:8000",
                  endpoint="/sse", client_name="bench-client", client_version="1.0",
                  server_name="bench-server", server_version="2.0",
                  protocol_version="2024-11-05", started_at=t0, ended_at=t0)
    get = out.add("exchanges", session_id=sid, method="GET", url="http://127.0.0.1:8000/sse",
                  path="/sse", status=200, reason="OK", request_headers=_HEADERS,
                  response_headers=_SSE_HEADERS, response_content_type="text/event-stream",
                  started_at=t0, response_at=t0 + 0.002, streamed=1, mcp=1)
    stream = out.add("streams", exchange_id=get, session_id=sid, method="GET", role="legacy",
                     opened_at=t0, first_byte_at=t0 + 0.003)
    offset = 0
    seq = 0

    def sse(t: float, kind: str, data: str, event_type: str | None) -> int:
        nonlocal offset, seq
        raw = (f": {data}\n\n" if kind == "comment" else
               f"event: {event_type}\ndata: {data}\n\n").encode()
        event = out.add("sse_events", stream_id=stream, session_id=sid, t=t, kind=kind,
                        type=event_type, data=data, start=offset, end=offset + len(raw))
        out.add("chunks", stream_id=stream, seq=seq, t=t, offset=offset, data=raw)
        offset += len(raw)
        seq += 1
        return event

    t = t0 + 0.003
    sse(t, "event", "/messages/?session_id=big", "endpoint")
    messages = 0
    rpc_id = 0
    events = comments = 0
    max_gap = 0.0
    last = t
    while messages < BIG_SESSION_MESSAGES:
        # Mostly a steady conversation, with a rare long silence (what gap markers are for).
        pause = rng.expovariate(1 / 0.02)
        if rng.random() < 0.00002:
            pause += rng.uniform(20, 90)
        t += pause
        if t - last > 15:  # heartbeats every 15 s of quiet
            while t - last > 15:
                last += 15
                sse(last, "comment", "ping", None)
                comments += 1
        max_gap = max(max_gap, (t - last) * 1000)
        method = rng.choice(("tools/call", "tools/call", "tools/call", "resources/read", "ping"))
        name = rng.choice(_TOOLS) if method == "tools/call" else None
        latency = rng.lognormvariate(-4.0, 1.0)
        error = rng.random() < 0.01
        post = out.add("exchanges", session_id=sid, method="POST",
                       url="http://127.0.0.1:8000/messages/?session_id=big", path="/messages/",
                       status=202, reason="Accepted", request_headers=_HEADERS,
                       response_headers="[]", request_content_type="application/json",
                       started_at=t, response_at=t + 0.001, ended_at=t + 0.001, mcp=1)
        call_id = out.next["calls"]
        request_id = out.add("messages", session_id=sid, exchange_id=post, t=t,
                             direction="c2s", kind="request", rpc_id=str(rpc_id), method=method,
                             json=_request(method, rpc_id, name), call_id=call_id)
        answered = t + latency
        body = _result(rpc_id, error)
        event = sse(answered, "event", body, "message")
        events += 1
        response_id = out.add("messages", session_id=sid, exchange_id=get, stream_id=stream,
                              sse_event_id=event, t=answered, direction="s2c",
                              kind="error" if error else "result", rpc_id=str(rpc_id),
                              json=body, call_id=call_id)
        out.add("calls", id=call_id, session_id=sid, direction="c2s", rpc_id=str(rpc_id),
                method=method, name=name, request_message_id=request_id,
                response_message_id=response_id, sent_at=t, answered_at=answered,
                latency_ms=latency * 1000, outcome="error" if error else "result",
                error_code=-32603 if error else None,
                error_message="internal error" if error else None, progress_count=0)
        if pause > 15:
            out.add("flags", session_id=sid, stream_id=stream, t=t - pause + 15,
                    kind="stream-gap", severity="warning",
                    message=f"no bytes on the SSE stream for {pause:.0f} s")
        if error and rng.random() < 0.1:
            out.add("flags", session_id=sid, call_id=call_id, message_id=response_id,
                    t=answered, kind="error-response", severity="info",
                    message="the server answered with a JSON-RPC error")
        messages += 2
        rpc_id += 1
        last = max(t, answered)
        t = answered
    out.rows["streams"] = [tuple(
        {"closed_at": t, "close_reason": "end", "bytes": offset, "chunks": seq,
         "events": events + 1, "comments": comments, "max_gap_ms": max_gap}.get(c, v)
        for c, v in zip(_Rows.COLUMNS["streams"], row)) for row in out.rows["streams"]]
    out.rows["sessions"] = [tuple(t if c == "ended_at" else v
                                  for c, v in zip(_Rows.COLUMNS["sessions"], row))
                            for row in out.rows["sessions"]]


def _small_session(out: _Rows, rng: random.Random, t0: float, index: int, count: int) -> None:
    """Streamable HTTP: each request is a POST answered on its own short SSE stream."""
    sid = out.add("sessions", key=f"sid:{index:04x}", transport="streamable-http",
                  server="http://127.0.0.1:9000", endpoint="/mcp",
                  client_name=rng.choice(("claude-code", "cursor", "mcp-inspector")),
                  client_version="1.2", server_name="bench-server", server_version="2.0",
                  protocol_version="2025-11-25", started_at=t0, ended_at=t0)
    t = t0
    messages = 0
    rpc_id = 0
    while messages < count:
        t += rng.expovariate(1 / 0.05)
        method = rng.choice(("tools/call", "tools/list", "resources/read"))
        name = rng.choice(_TOOLS) if method == "tools/call" else None
        latency = rng.lognormvariate(-3.5, 0.8)
        post = out.add("exchanges", session_id=sid, method="POST",
                       url="http://127.0.0.1:9000/mcp", path="/mcp", status=200, reason="OK",
                       request_headers=_HEADERS, response_headers=_SSE_HEADERS,
                       request_content_type="application/json",
                       response_content_type="text/event-stream", started_at=t,
                       response_at=t + 0.001, ended_at=t + latency, streamed=1, mcp=1)
        body = _result(rpc_id, False)
        raw = f"event: message\ndata: {body}\n\n".encode()
        stream = out.add("streams", exchange_id=post, session_id=sid, method="POST",
                         role="post", opened_at=t + 0.001, first_byte_at=t + latency,
                         closed_at=t + latency, close_reason="end", bytes=len(raw), chunks=1,
                         events=1, comments=0, max_gap_ms=latency * 1000)
        event = out.add("sse_events", stream_id=stream, session_id=sid, t=t + latency,
                        kind="event", type="message", data=body, start=0, end=len(raw))
        out.add("chunks", stream_id=stream, seq=0, t=t + latency, offset=0, data=raw)
        call_id = out.next["calls"]
        request_id = out.add("messages", session_id=sid, exchange_id=post, t=t,
                             direction="c2s", kind="request", rpc_id=str(rpc_id), method=method,
                             json=_request(method, rpc_id, name), call_id=call_id)
        response_id = out.add("messages", session_id=sid, exchange_id=post, stream_id=stream,
                              sse_event_id=event, t=t + latency, direction="s2c", kind="result",
                              rpc_id=str(rpc_id), json=body, call_id=call_id)
        out.add("calls", id=call_id, session_id=sid, direction="c2s", rpc_id=str(rpc_id),
                method=method, name=name, request_message_id=request_id,
                response_message_id=response_id, sent_at=t, answered_at=t + latency,
                latency_ms=latency * 1000, outcome="result", progress_count=0)
        messages += 2
        rpc_id += 1
        t += latency
    out.rows["sessions"][-1] = tuple(t if c == "ended_at" else v for c, v in
                                     zip(_Rows.COLUMNS["sessions"], out.rows["sessions"][-1]))


def build_capture(path: Path) -> None:
    """Write the benchmark capture: one 500k-message session and 99 smaller ones."""
    rng = random.Random(42)
    out = _Rows()
    t0 = 1_780_000_000.0
    _big_session(out, rng, t0)
    bulk_load(path, out.drain())
    per_session = (TOTAL_MESSAGES - BIG_SESSION_MESSAGES) // OTHER_SESSIONS
    remainder = (TOTAL_MESSAGES - BIG_SESSION_MESSAGES) - per_session * OTHER_SESSIONS
    for index in range(OTHER_SESSIONS):
        count = per_session + (2 if index < remainder // 2 else 0)
        _small_session(out, rng, t0 + 60 * index, index, count)
        if index % 10 == 9:
            bulk_load(path, out.drain())
    bulk_load(path, out.drain())
    writer = StoreWriter(path)
    writer.set_meta("bench_generator", GENERATOR_VERSION)
    writer.close()


def ensure_capture(path: Path, rebuild: bool) -> float | None:
    """Build the capture unless a current one is there; returns the build time, if built."""
    if path.exists() and not rebuild:
        try:
            with BrowseReader(path) as reader:
                if reader.meta().get("bench_generator") == GENERATOR_VERSION:
                    return None
        except StoreError:
            pass  # unreadable: rebuild it
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    build_capture(path)
    return time.perf_counter() - started


async def _wait(predicate: Any, timeout: float = 30.0, interval: float = 0.002) -> None:
    # Plain sleeps, not `pilot.pause()`: that waits for every message queue to drain, which
    # during a background scan measures the scan, not what the user sees. Long waits poll
    # slowly: every wake-up of the UI thread takes the GIL from the worker being measured.
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(interval)


async def measure(path: Path) -> dict[str, float]:
    """Time to first paint of the sessions table, then to the first page of the big session.

    "Painted" means the widget rendered lines holding loaded rows (a counter bumped in
    `render_line`), so the time includes the reads, the layout and a real render.
    """
    from tui.app import create_app
    from tui.widgets.session_table import SessionTable
    from tui.widgets.timeline import Timeline

    results: dict[str, float] = {}
    started = time.perf_counter()
    app = create_app(path, poll_interval=None)
    async with app.run_test(size=(120, 40)):
        table = app.screen.query_one(SessionTable)
        await _wait(lambda: table.row_count > 0 and table.painted_rows > 0)
        results["first_paint"] = time.perf_counter() - started
        await _wait(lambda: table.counts_loaded)
        results["counts"] = time.perf_counter() - started
        await _wait(lambda: table.percentiles_loaded, interval=0.02)
        results["percentiles"] = time.perf_counter() - started
        table.move_cursor(row=table.row_for_session(1))
        await asyncio.sleep(0.2)  # let the table settle, as a user would before pressing Enter
        opened = time.perf_counter()
        app.simulate_key("enter")

        def first_page() -> bool:
            timelines = app.screen.query(Timeline)
            return bool(timelines) and timelines.first().painted_rows > 0

        await _wait(first_page)
        results["open_session"] = time.perf_counter() - opened
        timeline = app.screen.query_one(Timeline)
        await _wait(lambda: timeline.index_complete, timeout=300, interval=0.05)
        results["index_session"] = time.perf_counter() - opened
        results["rows"] = float(timeline.row_count)
        jumped = time.perf_counter()
        app.simulate_key("end")
        await _wait(lambda: timeline.cursor_row == timeline.row_count - 1
                    and timeline.visible_rows_loaded())
        results["jump_to_end"] = time.perf_counter() - jumped
    return results


_COLD_START = """
import asyncio, sys, time
started = time.perf_counter()
sys.path.insert(0, {root!r})
from tui.app import create_app
from tui.widgets.session_table import SessionTable
async def main():
    app = create_app({db!r}, poll_interval=None)
    async with app.run_test(size=(120, 40)):
        table = app.screen.query_one(SessionTable)
        while not (table.row_count and table.painted_rows):
            await asyncio.sleep(0.002)
        print(time.perf_counter() - started)
asyncio.run(main())
"""


def cold_start(path: Path) -> float:
    """First paint in a fresh interpreter, imports included (what `ssetap browse` costs
    after Python itself has started)."""
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", _COLD_START.format(root=root, db=str(path))],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def naive_baseline(path: Path) -> float:
    """What a non-virtual list would pay first: reading every message row of the session."""
    started = time.perf_counter()
    with BrowseReader(path) as reader:
        reader.messages(1)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path,
                        default=Path(tempfile.gettempdir()) / "ssetap-tui-bench.db")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the capture")
    args = parser.parse_args(argv)
    built = ensure_capture(args.db, args.rebuild)
    with BrowseReader(args.db) as reader:
        counts = reader.counts()
    size_mb = os.path.getsize(args.db) / 1e6
    print(f"capture {args.db}: {counts['messages']:,} messages, {counts['sessions']} sessions, "
          f"{counts['sse_events']:,} SSE items, {counts['exchanges']:,} exchanges, "
          f"{size_mb:,.0f} MB" + (f" (built in {built:.1f} s)" if built else " (cached)"))
    results = asyncio.run(measure(args.db))
    cold = cold_start(args.db)
    naive = naive_baseline(args.db)
    first, opened = results["first_paint"], results["open_session"]
    print(f"time to first paint (sessions listed):  {first:.3f} s  "
          f"({first / TARGET_SECONDS:.0%} of the {TARGET_SECONDS:.0f} s target)")
    print(f"  the same in a fresh interpreter, with imports: {cold:.3f} s")
    print(f"counts (msgs, calls, pending, flags) in: {results['counts']:.3f} s")
    print(f"p50/p95 latency columns filled after:   {results['percentiles']:.3f} s")
    print(f"time to open the 500k session (1st page): {opened:.3f} s  "
          f"({opened / TARGET_SECONDS:.0%} of the target)")
    print(f"whole timeline indexed in background:   {results['index_session']:.3f} s  "
          f"({int(results['rows']):,} rows)")
    print(f"jump to the end of the timeline:        {results['jump_to_end']:.3f} s")
    print(f"baseline, reading the session's messages at once: {naive:.3f} s "
          f"({naive / opened:.0f}x the time to open it)")
    return 0 if first < TARGET_SECONDS and opened < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
