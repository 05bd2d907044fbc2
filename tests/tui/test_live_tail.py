"""Live tail: a recorder keeps writing while the browser is open."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder.store import StoreWriter
from tui.app import create_app
from tui.screens.session import SessionScreen
from tui.timeline_index import MESSAGE
from tui.widgets.session_table import SessionTable
from tui.widgets.timeline import Timeline

T0 = 1_767_225_600.0


def add_session(writer: StoreWriter, t: float, client: str) -> int:
    sid = writer.next_id("sessions")
    writer.insert("sessions", {"id": sid, "key": f"sid:{sid}", "transport": "streamable-http",
                               "server": "http://127.0.0.1:8000", "client_name": client,
                               "started_at": t, "ended_at": t})
    return sid


def add_call(writer: StoreWriter, sid: int, t: float, rpc_id: int) -> None:
    """A ping request and its result, linked through a call, as the recorder writes them."""
    call_id = writer.next_id("calls")
    request = writer.next_id("messages")
    response = writer.next_id("messages")
    writer.insert("messages", {"id": request, "session_id": sid, "t": t, "direction": "c2s",
                               "kind": "request", "rpc_id": str(rpc_id), "method": "ping",
                               "json": f'{{"jsonrpc":"2.0","id":{rpc_id},"method":"ping"}}',
                               "call_id": call_id})
    writer.insert("calls", {"id": call_id, "session_id": sid, "direction": "c2s",
                            "rpc_id": str(rpc_id), "method": "ping", "request_message_id": request,
                            "sent_at": t, "outcome": "pending"})
    writer.insert("messages", {"id": response, "session_id": sid, "t": t + 0.01,
                               "direction": "s2c", "kind": "result", "rpc_id": str(rpc_id),
                               "json": f'{{"jsonrpc":"2.0","id":{rpc_id},"result":{{}}}}',
                               "call_id": call_id})
    writer.update("calls", call_id, {"response_message_id": response, "answered_at": t + 0.01,
                                     "latency_ms": 10.0, "outcome": "result"})
    writer.update("sessions", sid, {"ended_at": t + 0.01})


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_new_sessions_and_rows_appear_while_another_thread_records(
        tmp_path: Path, settle: Callable[..., Any], messages: Any) -> None:
    path = tmp_path / "live.db"
    writer = StoreWriter(path, batch_seconds=0.01)
    first = add_session(writer, T0, "first-client")
    add_call(writer, first, T0 + 0.1, 0)
    writer.flush()
    more = threading.Event()
    stop = threading.Event()

    def recorder() -> None:
        # The writer thread of a recording: a new session, then calls in the first one.
        more.wait(10)
        add_session(writer, T0 + 1, "second-client")
        for n in range(1, 6):
            add_call(writer, first, T0 + 1 + n, n)
            writer.flush()
            if stop.wait(0.05):
                return

    thread = threading.Thread(target=recorder)
    thread.start()
    try:
        app = create_app(path, poll_interval=0.05)
        async with app.run_test(size=(100, 30), message_hook=messages.append) as pilot:
            table = app.screen.query_one(SessionTable)
            await wait_until(lambda: table.row_count == 1 and table.counts_loaded)
            await pilot.press("enter")
            timeline = app.screen.query_one(Timeline)
            assert isinstance(app.screen, SessionScreen)
            await wait_until(lambda: timeline.row_count == 2)
            await pilot.press("G")  # on the last row: follow new rows as they come
            more.set()
            await wait_until(lambda: timeline.row_count == 12)
            await wait_until(lambda: timeline.cursor_row == 11)
            assert timeline.current_key()[0] == MESSAGE  # type: ignore[index]
            await wait_until(lambda: app.screen.session.get("messages") == 12)
            await pilot.press("escape")
            await wait_until(lambda: table.row_count == 2)
            assert {s["client_name"] for s in table.sessions.values()} == {
                "first-client", "second-client"}
            await wait_until(lambda: table.sessions[first]["messages"] == 12)
            progressed = messages.of(Timeline.IndexProgressed)
            assert any(m.live for m in progressed)
    finally:
        stop.set()
        more.set()
        thread.join()
        writer.close()
