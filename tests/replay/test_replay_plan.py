"""Unit tests of replay.plan (and the verdicts built on it), on synthetic recordings."""

from __future__ import annotations

from typing import Any

import pytest

from replay.plan import (
    IdMap,
    PlanError,
    Step,
    Timing,
    build_plan,
    live_message,
    parse_timing,
)
from replay.recording import RecordedCall, RecordedMessage, RecordedSession, Recording
from replay.results import DIFFERS, ERROR, MATCH, MISSING, SLOW
from replay.verdict import (
    LatencyError,
    LatencyLimit,
    LiveOutcome,
    judge,
    parse_latency_limit,
)

SESSION = RecordedSession(1, "sid:x", "streamable-http", "http://127.0.0.1:1", "/mcp",
                          "2025-06-18", 100.0)


class Script:
    """Builds a Recording message by message, with calls paired as the recorder pairs them."""

    def __init__(self) -> None:
        self.messages: list[RecordedMessage] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.open: dict[tuple[str, Any], int] = {}

    def _add(self, t: float, direction: str, kind: str, payload: dict[str, Any],
             call_id: int | None = None) -> RecordedMessage:
        message = RecordedMessage(len(self.messages) + 1, 100.0 + t, direction, kind,
                                  None if "id" not in payload else str(payload["id"]),
                                  payload.get("method"), payload, call_id, None, None, None)
        self.messages.append(message)
        return message

    def request(self, t: float, rid: Any, method: str, params: Any = None,
                direction: str = "c2s") -> None:
        call_id = len(self.calls) + 1
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            payload["params"] = params
        message = self._add(t, direction, "request", payload, call_id)
        self.calls[call_id] = {"id": call_id, "direction": direction, "rpc_id": str(rid),
                               "method": method, "request": message.id, "response": None,
                               "sent": message.t, "answered": None, "cancelled": None}
        self.open[(direction, rid)] = call_id

    def respond(self, t: float, rid: Any, result: Any = None, error: Any = None,
                direction: str = "s2c") -> None:
        call_id = self.open.pop(("c2s" if direction == "s2c" else "s2c", rid))
        body = {"error": error} if error is not None else {"result": result}
        message = self._add(t, direction, "error" if error is not None else "result",
                            {"jsonrpc": "2.0", "id": rid, **body}, call_id)
        self.calls[call_id].update(response=message.id, answered=message.t)

    def notify(self, t: float, method: str, params: Any = None, direction: str = "c2s",
               call_id: int | None = None) -> None:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            payload["params"] = params
        self._add(t, direction, "notification", payload, call_id)

    def recording(self) -> Recording:
        calls = tuple(
            RecordedCall(c["id"], c["direction"], c["rpc_id"], c["method"], None, c["request"],
                         c["response"], c["sent"], c["answered"],
                         None if c["answered"] is None else (c["answered"] - c["sent"]) * 1000,
                         "result" if c["answered"] else "pending", c["cancelled"])
            for c in self.calls.values())
        return Recording("x.db", SESSION, tuple(self.messages), calls)


def handshake(s: Script) -> None:
    s.request(0.0, 0, "initialize", {"protocolVersion": "2025-06-18"})
    s.respond(0.01, 0, {"protocolVersion": "2025-06-18"})
    s.notify(0.02, "notifications/initialized")


def test_sequential_client_waits_for_each_response() -> None:
    s = Script()
    handshake(s)
    s.request(0.03, 1, "tools/list")
    s.respond(0.04, 1, {"tools": []})
    s.request(0.05, 2, "tools/call", {"name": "echo", "arguments": {"text": "x"}})
    s.respond(0.06, 2, {"content": []})
    plan = build_plan(s.recording())

    assert [(st.label, st.waits_for, st.ordinal) for st in plan.steps] == [
        ("initialize", (), 1),
        ("notifications/initialized", (0,), None),
        ("tools/list", (), 2),
        ("tools/call echo", (2,), 3),
    ]
    assert plan.steps[3].t == pytest.approx(0.05)
    assert plan.steps[3].expectation is not None
    assert plan.steps[3].expectation.response == {"result": {"content": []}}
    assert plan.steps[3].expectation.latency_ms == pytest.approx(10)


def test_concurrent_requests_stay_concurrent_and_cancels_point_at_their_step() -> None:
    s = Script()
    handshake(s)
    s.request(0.03, 1, "tools/call", {"name": "hang", "arguments": {}})
    s.request(0.04, 2, "tools/call", {"name": "echo", "arguments": {}})
    s.respond(0.05, 2, {"content": []})
    s.notify(0.06, "notifications/cancelled", {"requestId": 1, "reason": "timeout"})
    plan = build_plan(s.recording())

    hang, echo, cancel = plan.steps[2:]
    assert hang.waits_for == () and echo.waits_for == ()  # both were in flight together
    assert cancel.cancels == hang.index and cancel.waits_for == (echo.index,)
    assert hang.expectation is not None and hang.expectation.kind == "none"


def test_progress_tokens_and_progress_expectations() -> None:
    s = Script()
    handshake(s)
    s.request(0.03, 5, "tools/call", {"name": "countdown", "_meta": {"progressToken": 5}})
    s.notify(0.04, "notifications/progress", {"progressToken": 5, "progress": 1},
             direction="s2c", call_id=2)
    s.respond(0.05, 5, {"content": []})
    step = build_plan(s.recording()).steps[2]
    assert step.progress_token == 5
    assert step.expectation is not None and step.expectation.progress == ({"progress": 1},)


def test_filters_keep_the_handshake_and_carry_waits_over() -> None:
    s = Script()
    handshake(s)
    s.request(0.03, 1, "tools/call", {"name": "a"})
    s.respond(0.04, 1, {})
    s.request(0.05, 2, "tools/list")
    s.respond(0.06, 2, {"tools": []})
    s.request(0.07, 3, "tools/call", {"name": "b"})
    s.respond(0.08, 3, {})
    plan = build_plan(s.recording(), skip=["tools/call:a"])
    assert [st.label for st in plan.steps] == ["initialize", "notifications/initialized",
                                               "tools/list", "tools/call b"]
    assert plan.skipped == 1
    assert plan.steps[3].waits_for == (2,) and plan.steps[3].ordinal == 4  # stable numbering
    only = build_plan(s.recording(), only=["tools/list"])
    assert [st.label for st in only.steps] == ["initialize", "notifications/initialized",
                                               "tools/list"]


def test_a_capture_without_initialize_gets_a_synthetic_handshake() -> None:
    s = Script()
    s.request(0.0, 7, "tools/list")
    s.respond(0.01, 7, {"tools": []})
    plan = build_plan(s.recording())
    assert [(st.method, st.synthetic) for st in plan.steps] == [
        ("initialize", True), ("notifications/initialized", True), ("tools/list", False)]
    assert plan.steps[0].payload["params"]["protocolVersion"] == "2025-06-18"
    assert plan.notes and len(plan.requests) == 1


def test_server_requests_become_recorded_answers() -> None:
    s = Script()
    handshake(s)
    s.request(0.03, 1, "tools/call", {"name": "ask"})
    s.request(0.04, 0, "sampling/createMessage", {"messages": [{"q": 1}],
                                                  "_meta": {"x": 1}}, direction="s2c")
    s.respond(0.07, 0, {"role": "assistant", "content": "4"}, direction="c2s")
    s.respond(0.08, 1, {"content": []})
    plan = build_plan(s.recording())
    assert [st.label for st in plan.steps][-1] == "tools/call ask"  # client answers are no steps
    matcher = plan.answers.matcher()
    found = matcher.match("sampling/createMessage", {"messages": [{"q": 1}]})
    assert found is not None
    assert found.value.response == {"result": {"role": "assistant", "content": "4"}}
    assert found.value.delay == pytest.approx(0.03)
    assert matcher.match("sampling/createMessage", {"messages": [{"q": 2}]}) is None
    assert matcher.match("sampling/createMessage", {"messages": [{"q": 2}]}, loose=True)


def test_id_map_gives_fresh_ids_of_the_same_type_never_reused() -> None:
    ids = IdMap()
    first, second, third = ids.fresh(0), ids.fresh("abc"), ids.fresh(0)
    assert isinstance(first, int) and isinstance(second, str) and isinstance(third, int)
    assert len({repr(first), repr(second), repr(third)}) == 3
    assert ids.live_for(0) == third and ids.recorded_for(second) == "abc"
    assert ids.recorded_for(first) == 0


def test_live_message_rewrites_ids_tokens_and_cancellations() -> None:
    payload = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
               "params": {"name": "c", "_meta": {"progressToken": 5, "other": 1}}}
    step = Step(0, "request", "tools/call", payload, 0.0, progress_token=5)
    message = live_message(step, 41, progress_token=42)
    assert message["id"] == 41
    assert message["params"]["_meta"] == {"progressToken": 42, "other": 1}
    assert payload["params"]["_meta"]["progressToken"] == 5  # the plan is never mutated
    cancel = Step(1, "notification", "notifications/cancelled",
                  {"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 5, "reason": "r"}}, 0.0, cancels=0)
    assert live_message(cancel, cancel_id=41)["params"] == {"requestId": 41, "reason": "r"}


@pytest.mark.parametrize(("text", "speed"), [("fast", None), ("recorded", 1.0), ("x2", 2.0),
                                             ("0.5x", 0.5), ("X10", 10.0)])
def test_parse_timing(text: str, speed: float | None) -> None:
    timing = parse_timing(text)
    assert timing.speed == speed
    assert timing.scaled(1.0) == (None if speed is None else 1.0 / speed)


@pytest.mark.parametrize("bad", ["x0", "slow", "2", "-1x"])
def test_bad_timing(bad: str) -> None:
    with pytest.raises(PlanError):
        parse_timing(bad)


# --- Verdicts ---------------------------------------------------------------------------------


def _step(response: dict[str, Any] | None, latency: float | None = 10.0,
          method: str = "tools/call", **kw: Any) -> Step:
    from replay.plan import Expectation

    return Step(0, "request", method, {}, 0.0, ordinal=1, name="echo",
                expectation=Expectation(response, latency, **kw))


OK_RESULT = {"result": {"content": [{"type": "text", "text": "hi"}], "isError": False}}


def test_verdicts() -> None:
    step = _step(OK_RESULT)
    live = {"jsonrpc": "2.0", "id": 1, **OK_RESULT}
    assert judge(step, LiveOutcome(live, 12.0)).status == MATCH
    changed = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "yo"}],
                                                      "isError": False}}
    verdict = judge(step, LiveOutcome(changed, 12.0))
    assert verdict.status == DIFFERS and verdict.differences[0].path == "$.result.content[0].text"
    tool_error = {"jsonrpc": "2.0", "id": 1,
                  "result": {"content": [{"type": "text", "text": "boom"}], "isError": True}}
    assert judge(step, LiveOutcome(tool_error, 1.0)).detail == "tool error: boom"
    rpc_error = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}}
    verdict = judge(step, LiveOutcome(rpc_error, 1.0))
    assert (verdict.status, verdict.detail) == (ERROR, "JSON-RPC error -32602: bad")
    assert judge(step, LiveOutcome(missing="no response within 30 s")).status == MISSING
    assert judge(step, LiveOutcome(failure="HTTP 500: oops")).status == ERROR
    assert judge(step, LiveOutcome(live, 900.0), fail_on_slow=True).status == SLOW
    reported = judge(step, LiveOutcome(live, 900.0))  # not asked: reported, not failed
    assert reported.status == MATCH and reported.slow and "reported" in (reported.detail or "")
    slow_and_changed = judge(step, LiveOutcome(changed, 900.0))
    assert slow_and_changed.status == DIFFERS and slow_and_changed.slow
    # A recorded error that stays the same error matches.
    err_step = _step({"error": {"code": 0, "message": "Unknown resource"}})
    same = {"jsonrpc": "2.0", "id": 3, "error": {"code": 0, "message": "Unknown resource"}}
    assert judge(err_step, LiveOutcome(same, 1.0)).status == MATCH
    # Nothing was recorded (a cancelled call): whatever happens live is not compared.
    assert judge(_step(None, cancelled=True), LiveOutcome()).status == MATCH


def test_progress_is_compared_when_either_side_has_it() -> None:
    step = _step(OK_RESULT, progress=({"progress": 1},))
    live = {"jsonrpc": "2.0", "id": 1, **OK_RESULT}
    assert judge(step, LiveOutcome(live, 1.0, ({"progress": 1},))).status == MATCH
    verdict = judge(step, LiveOutcome(live, 1.0, ()))
    assert [d.path for d in verdict.differences] == ["$.progress[0]"]


@pytest.mark.parametrize(("text", "limit"), [
    ("2x", LatencyLimit(2.0, None)), ("150%", LatencyLimit(1.5, None)),
    ("250ms", LatencyLimit(None, 250.0)), ("1.5s", LatencyLimit(None, 1500.0)),
    ("2x+250ms", LatencyLimit(2.0, 250.0)), ("off", LatencyLimit(None, None)),
])
def test_latency_limits(text: str, limit: LatencyLimit) -> None:
    assert parse_latency_limit(text) == limit


def test_latency_limit_needs_both_sides() -> None:
    limit = LatencyLimit(2.0, 250.0)
    assert not limit.exceeded(2.0, 10.0)  # 5x, but only 8 ms
    assert not limit.exceeded(1000.0, 1400.0)  # +400 ms, but only 1.4x
    assert limit.exceeded(500.0, 1200.0)
    assert not LatencyLimit(None, None).exceeded(1.0, 1e9)
    with pytest.raises(LatencyError):
        parse_latency_limit("soon")


def test_timing_str() -> None:
    assert [str(Timing(s)) for s in (None, 1.0, 2.0)] == ["fast", "recorded", "x2"]
