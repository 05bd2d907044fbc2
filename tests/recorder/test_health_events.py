"""The detectors fed typed events directly (no ingest): the contract of recorder.events.

The script tests in test_health.py drive the real ingest; these build the events by hand, to
pin what the detectors rely on: calls come from correlate's call events (never re-paired
from message ids), payloads from `MessageSeen.payload` (never parsed again), dispatch by
event type (events no detector reads pass untouched).
"""

from __future__ import annotations

from typing import Any, get_args

import pytest

from recorder import events as ev
from recorder.health import HealthConfig, HealthMonitor
from recorder.health.calls import CallChecks
from recorder.health.context import Context, Detector
from recorder.health.reconnects import ReconnectChecks
from recorder.health.security import SecurityChecks
from recorder.health.sessions import SessionChecks
from recorder.health.streams import StreamChecks
from recorder.model import Flag

CFG = HealthConfig(heartbeat_interval=0.0, request_timeout=5.0)
SERVER = "http://127.0.0.1:8000"
HEADERS = (("Content-Type", "application/json"),
           ("Accept", "application/json, text/event-stream"))


class Script:
    """Builds a capture's events with fresh ids, as ingest numbers them."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.ids: dict[str, int] = {}

    def next(self, table: str) -> int:
        self.ids[table] = self.ids.get(table, 0) + 1
        return self.ids[table]

    def session(self, t: float, key: str, transport: str = "streamable-http") -> int:
        sid = self.next("sessions")
        self.events.append(ev.SessionOpened(sid, key, transport, SERVER, "/mcp", t, t,
                                            "127.0.0.1:5000", "client/1"))
        return sid

    def post(self, t: float, session: int, status: int = 200,
             ctype: str = "application/json") -> int:
        ex = self.next("exchanges")
        headers = (*HEADERS, ("Mcp-Session-Id", f"s{session}"))
        self.events += [
            ev.RequestSeen(ex, f"f{ex}", "POST", SERVER + "/mcp", "/mcp", headers, None,
                           "application/json", t, "127.0.0.1:5000", True, 0, session),
            ev.ResponseSeen(ex, t + 0.001, status, "", (("Content-Type", ctype),), ctype,
                            True, True, session),
        ]
        return ex

    def end(self, t: float, ex: int, session: int) -> None:
        self.events.append(ev.ExchangeEnded(ex, t, None, True, session))

    def message(self, t: float, session: int, ex: int | None, direction: str, kind: str,
                payload: Any, *, rpc_id: str | None = None, method: str | None = None,
                call_id: int | None = None, json: str | None = "(as sent)") -> int:
        # `json` is the stored text: the detectors must not read it (here it is not JSON).
        mid = self.next("messages")
        self.events.append(ev.MessageSeen(mid, session, ex, None, None, t, direction, kind,
                                          rpc_id, method, None, json, None, call_id, payload))
        return mid

    def call(self, t: float, session: int, ex: int, rpc_id: int, method: str,
             replaced: int | None = None, **params: Any) -> int:
        call_id = self.next("calls")
        mid = self.message(t, session, ex, "c2s", "request",
                           {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params},
                           rpc_id=str(rpc_id), method=method, call_id=call_id)
        self.events.append(ev.CallOpened(call_id, session, "c2s", str(rpc_id), method,
                                         params.get("name"), mid, t, "pending", None, replaced))
        return call_id

    def answer(self, t: float, session: int, ex: int | None, rpc_id: int,
               call_id: int | None, *, error: bool = False, late: bool = False,
               orphan_of: int | None = None) -> None:
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id}
        if error:
            body["error"] = {"code": -32000, "message": "boom"}
        else:
            body["result"] = {}
        mid = self.message(t, session, ex, "s2c", "error" if error else "result", body,
                           rpc_id=str(rpc_id), call_id=call_id)
        if call_id is not None:
            self.events.append(ev.CallAnswered(t, call_id, session, mid, 1.0,
                                               None if late else "result",
                                               -32000 if error else None,
                                               "boom" if error else None, late))
        else:
            self.events.append(ev.CallOrphan(t, session, mid, "orphan", orphan_of))

    def tick(self, t: float) -> None:
        self.events.append(ev.Tick(t))

    def flags(self) -> list[Flag]:
        monitor = HealthMonitor(CFG)
        return monitor.feed(self.events) + monitor.finish(self.events[-1].t)


def kinds(flags: list[Flag]) -> list[str]:
    return [f.kind for f in flags]


def test_a_call_times_out_from_its_call_event_alone() -> None:
    s = Script()
    sid = s.session(0.0, "sid:s1")
    ex = s.post(1.0, sid)
    call = s.call(1.0, sid, ex, 3, "tools/call", name="hang")
    s.end(1.01, ex, sid)
    s.tick(7.0)
    flag = next(f for f in s.flags() if f.kind == "request-timeout")
    assert flag.call_id == call and "tools/call hang (id 3)" in flag.message


def test_the_pairing_is_the_correlators_not_the_ids() -> None:
    """An answer whose call event says it answered call 1 settles call 1, whatever its id."""
    s = Script()
    sid = s.session(0.0, "sid:s1")
    ex = s.post(1.0, sid)
    call = s.call(1.0, sid, ex, 3, "tools/call", name="work")
    s.answer(1.5, sid, ex, 99, call)  # id 99, but the correlator paired it with call 1
    s.tick(7.0)
    assert kinds(s.flags()) == []


def test_an_answer_the_correlator_calls_an_orphan_is_one() -> None:
    s = Script()
    sid = s.session(0.0, "sid:s1")
    ex = s.post(1.0, sid)
    call = s.call(1.0, sid, ex, 3, "tools/list")
    s.answer(1.2, sid, ex, 3, call)
    s.answer(1.4, sid, None, 3, None, orphan_of=call)
    flag = next(f for f in s.flags() if f.kind == "orphan-response")
    assert "a second response to c2s request 3 arrived 200 ms after the first" in flag.message


def test_a_reused_id_is_the_call_events_replaced() -> None:
    s = Script()
    sid = s.session(0.0, "sid:s1")
    ex = s.post(1.0, sid)
    first = s.call(1.0, sid, ex, 3, "tools/list")
    s.call(1.2, sid, ex, 3, "tools/list", replaced=first)
    flag = next(f for f in s.flags() if f.kind == "duplicate-id")
    assert flag.severity == "error" and "while the first was still in flight" in flag.message
    # The replaced call is over: only the new one can time out.
    s.tick(7.0)
    assert kinds(s.flags()).count("request-timeout") == 1


def test_an_orphan_of_one_session_pending_in_another_is_cross_session() -> None:
    s = Script()
    a = s.session(0.0, "sid:a")
    b = s.session(0.0, "sid:b")
    ex = s.post(1.0, a)
    s.call(1.0, a, ex, 7, "tools/call", name="x")
    s.answer(1.3, b, None, 7, None)  # the correlator found no call 7 in session b
    flags = s.flags()
    flag = next(f for f in flags if f.kind == "cross-session-delivery")
    assert flag.details["sessions"] == [a, b] and "orphan-response" not in kinds(flags)


def test_a_cancel_and_a_late_answer_come_from_the_call_events() -> None:
    s = Script()
    sid = s.session(0.0, "sid:s1")
    ex = s.post(1.0, sid)
    call = s.call(1.0, sid, ex, 3, "tools/call", name="slow")
    mid = s.message(1.5, sid, None, "c2s", "notification",
                    {"jsonrpc": "2.0", "method": "notifications/cancelled",
                     "params": {"requestId": 3, "reason": "user"}},
                    method="notifications/cancelled", call_id=call)
    s.events.append(ev.CallCancelled(1.5, call, sid, mid, "user"))
    s.answer(1.8, sid, ex, 3, call, late=True)
    flags = s.flags()
    assert sorted(kinds(flags)) == ["late-response", "request-cancelled"]
    assert "with reason 'user'" in next(f for f in flags if f.kind == "request-cancelled").message


def test_an_error_answer_reads_the_payload_not_the_stored_text() -> None:
    s = Script()
    sid = s.session(0.0, "sid:s1")
    ex = s.post(1.0, sid)
    call = s.call(1.0, sid, ex, 3, "tools/call", name="x")
    s.answer(1.1, sid, ex, 3, call, error=True)
    flag = next(f for f in s.flags() if f.kind == "error-response")
    assert "JSON-RPC error -32000 'boom'" in flag.message


def test_events_no_detector_reads_pass_untouched() -> None:
    monitor = HealthMonitor(CFG)
    counters = ev.StreamCounters(1.0, 9, 0, 0, 0, 0, 0.0, False, None, None)
    for event in (ev.SessionSeen(1.0, 1), counters, ev.ChunkStored(1, 9, 0, 1.0, 0, b"x"),
                  ev.InjectionMade(1, None, None, None, 1.0, "s", "k", "a", None),
                  ev.SessionLearned(1.0, 1, protocol_version="2025-06-18"),
                  ev.ChunkSeen(1.0, 9, None, 0, 1), ev.StreamClosed(1.0, 9, None, "end", counters),
                  ev.ExchangeEnded(5, 1.0, None, False, None)):
        assert monitor.observe(event) == []


@pytest.mark.parametrize("detector", [StreamChecks, ReconnectChecks, SessionChecks,
                                      SecurityChecks])
def test_every_detector_declares_real_handlers_for_event_types(detector: type[Detector]) -> None:
    handlers = detector(Context()).handlers()
    assert handlers and all(callable(h) for h in handlers.values())
    # The recorder's typed events, and capture gaps (recorder.gaps), which the events include.
    assert all(kind.__module__ in ("recorder.events", "recorder.gaps") for kind in handlers)
    assert all(kind in get_args(ev.Event) for kind in handlers)


def test_the_call_detector_declares_the_call_events() -> None:
    ctx = Context()
    calls = CallChecks(ctx, SessionChecks(ctx))
    assert {ev.CallOpened, ev.CallAnswered, ev.CallCancelled, ev.CallOrphan} <= set(
        calls.handlers())


def test_counters_stamped_by_the_recorders_clock_do_not_move_the_checks_clock() -> None:
    """Periodic StreamCounters carry the recording process's time; the live checks hold
    ticks back by their backlog. A counter must not make a stream behind look silent."""
    cfg = HealthConfig(heartbeat_interval=1.0, heartbeat_slack=0.3)
    monitor = HealthMonitor(cfg)
    s = Script()
    sid = s.session(0.0, "sid:s1")
    ex = s.next("exchanges")
    s.events += [
        ev.RequestSeen(ex, "g", "GET", SERVER + "/mcp", "/mcp",
                       (("Accept", "text/event-stream"), ("Mcp-Session-Id", "s1")), None, None,
                       1.0, "127.0.0.1:5000", True, 0, sid),
        ev.StreamOpened(1, ex, sid, "GET", "get", None, 1.01, None),
        ev.ResponseSeen(ex, 1.01, 200, "", (("Content-Type", "text/event-stream"),),
                        "text/event-stream", True, True, sid),
        ev.ChunkSeen(1.2, 1, sid, 0, 10),
        ev.StreamCounters(9.0, 1, 10, 1, 0, 1, 190.0, False, None, 1.2),  # "now", 8 s ahead
        ev.SessionSeen(9.0, sid),
        ev.Tick(1.5),
    ]
    assert monitor.feed(s.events) == []
    assert monitor.now == 1.5
