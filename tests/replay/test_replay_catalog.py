"""Unit tests of replay.catalog: what the mock plays back for each request (pure)."""

from __future__ import annotations

from typing import Any

from replay.catalog import PROGRESS, RESPONSE, SERVER_REQUEST, build_catalog
from replay.recording import (
    RecordedCall,
    RecordedMessage,
    RecordedSession,
    RecordedSseItem,
    RecordedStream,
    Recording,
)


def _legacy_recording() -> Recording:
    """A legacy session: one GET stream carries heartbeats, a log, a sampling request,
    progress and the response of one tools/call."""
    session = RecordedSession(1, "legacy:x", "sse", "http://s", "/sse", "2025-06-18", 0.0)
    stream = RecordedStream(1, 1, "GET", "legacy", 0.0, None)
    items = [
        RecordedSseItem(1, 1, 0.01, "event", "endpoint", "/messages/?session_id=abc", None, None),
        RecordedSseItem(2, 1, 0.50, "comment", None, "ping", None, None),
    ]
    messages: list[RecordedMessage] = []

    def msg(t: float, direction: str, kind: str, payload: dict[str, Any],
            call: int | None) -> None:
        sse_id = None
        if direction == "s2c":
            sse_id = len(items) + 1
            items.append(RecordedSseItem(sse_id, 1, t, "event", "message", "{}", None, None))
        messages.append(RecordedMessage(len(messages) + 1, t, direction, kind,
                                        str(payload.get("id")) if "id" in payload else None,
                                        payload.get("method"), payload, call, None,
                                        1 if direction == "s2c" else None, sse_id))

    msg(1.00, "c2s", "request", {"id": 7, "method": "tools/call",
                                 "params": {"name": "ask", "_meta": {"progressToken": 7}}}, 1)
    msg(1.10, "s2c", "notification", {"method": "notifications/message",
                                      "params": {"data": "thinking"}}, None)
    msg(1.20, "s2c", "request", {"id": 0, "method": "sampling/createMessage"}, 2)
    msg(1.30, "c2s", "result", {"id": 0, "result": {"content": "4"}}, 2)
    msg(1.40, "s2c", "notification", {"method": "notifications/progress",
                                      "params": {"progressToken": 7, "progress": 1}}, 1)
    msg(1.50, "s2c", "result", {"id": 7, "result": {"content": []}}, 1)
    msg(3.00, "s2c", "notification", {"method": "notifications/tools/list_changed"}, None)
    calls = (
        RecordedCall(1, "c2s", "7", "tools/call", "ask", 1, 6, 1.0, 1.5, 500.0, "result", None),
        RecordedCall(2, "s2c", "0", "sampling/createMessage", None, 3, 4, 1.2, 1.3, 100.0,
                     "result", None),
    )
    return Recording("x.db", session, tuple(messages), calls, (), (stream,), tuple(items))


def test_legacy_stream_is_split_into_call_scripts_and_the_session_stream() -> None:
    catalog = build_catalog([_legacy_recording()])
    (candidate,) = catalog.index.candidates
    reply = candidate.value
    assert (candidate.method, reply.mode, reply.answered) == ("tools/call", "sse", True)
    # The log and the sampling request came while the call was in flight: they are its.
    assert [(round(i.delay, 2), i.role) for i in reply.items] == [
        (0.1, "other"), (0.2, SERVER_REQUEST), (0.4, PROGRESS), (0.5, RESPONSE)]
    # The session stream keeps the heartbeat and the unprompted notification, timed from its
    # opening; the mock announces its own endpoint.
    assert [(i.kind, i.delay) for i in catalog.stream_items] == [("comment", 0.5),
                                                                 ("message", 3.0)]
    assert (catalog.sse_path, catalog.messages_path, catalog.recorded_transport) == (
        "/sse", "/messages/", "sse")


def test_matching_ignores_meta_and_consumes_answers_in_order() -> None:
    catalog = build_catalog([_legacy_recording()])
    matcher = catalog.index.matcher()
    assert matcher.match("tools/call", {"name": "ask"}) is not None
    assert matcher.match("tools/call", {"name": "ask", "_meta": {"progressToken": 1}})
    assert matcher.match("tools/call", {"name": "other"}) is None
    closest = matcher.closest("tools/call", {"name": "other"})
    assert closest is not None and closest.describe() == 'tools/call {"name":"ask"}'
    assert matcher.closest("tools/cal", None) is not None  # by method-name similarity
