"""The fault core: spec grammar and validation, the schedule, and the stream filter."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.fault_stream import StreamFilter
from recorder.faults import (
    FAULT_KINDS,
    FaultConfig,
    FaultPlan,
    FaultSpecError,
    fault_config,
    parse_fault,
)

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize(("text", "fields"), [
    ("drop-heartbeats", {}),
    ("strip-event-ids", {}),
    ("buffer=2s", {"seconds": 2.0}),
    ("idle-cut=500ms", {"seconds": 0.5}),
    ("cut-stream=3", {"count": 3}),
    ("session-lost=1m", {"seconds": 60.0}),
    ("delay=tools/call:2s", {"method": "tools/call", "name": None, "seconds": 2.0}),
    ("delay=tools/call:echo:1.5", {"method": "tools/call", "name": "echo", "seconds": 1.5}),
    ("hang=tools/*", {"method": "tools/*", "name": None}),
    ("hang=resources/read:demo://*", {"method": "resources/read", "name": "demo://*"}),
    ("error=tools/call:echo:-32603", {"method": "tools/call", "name": "echo", "code": -32603}),
    ("error=ping:-1", {"method": "ping", "code": -1}),
])
def test_specs_parse(text, fields):
    spec = parse_fault(text)
    assert spec.text == text and spec.kind == text.split("=")[0]
    for name, value in fields.items():
        assert getattr(spec, name) == value, name


@pytest.mark.parametrize(("text", "says"), [
    ("bogus", "unknown fault"), ("buffer", "needs a value"), ("buffer=", "needs a value"),
    ("buffer=fast", "not a duration"), ("idle-cut=0s", "more than 0"),
    ("cut-stream=0", "1 or more"), ("cut-stream=two", "whole number"),
    ("drop-heartbeats=1", "takes no value"), ("error=tools/call", "expected error="),
    ("error=tools/call:echo:oops", "CODE must be an integer"), ("delay=:2s", "METHOD is missing"),
    ("delay=tools/call:slow", "not a duration"),
])
def test_bad_specs_say_why_in_one_line(text, says):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_schedule_options_are_validated():
    with pytest.raises(FaultSpecError):
        fault_config(["drop-heartbeats"], sessions="none")
    with pytest.raises(FaultSpecError):
        fault_config(["drop-heartbeats"], every="0s")
    config = fault_config(["cut-stream=2"], after="1s", every="2s", sessions=1)
    assert FaultConfig.from_json(config.to_json()) == config


def test_globs_match_method_and_name():
    spec = parse_fault("error=tools/*:send_*:-32000")
    assert spec.matches("tools/call", "send_mail")
    assert not spec.matches("tools/call", "read_mail")
    assert not spec.matches("prompts/get", "send_mail")
    assert parse_fault("hang=tools/call").matches("tools/call", None)


def test_after_every_and_sessions():
    plan = FaultPlan(fault_config(["hang=ping"], after=1.0, every=2.0, sessions=1))
    assert plan.for_request("a", 100.0, "ping", None, 1) is None  # too early
    assert plan.for_request("a", 101.5, "ping", None, 2) is not None  # on
    assert plan.for_request("a", 103.5, "ping", None, 3) is None  # off
    assert plan.for_request("a", 105.5, "ping", None, 4) is not None  # on again
    assert plan.for_request("b", 110.0, "ping", None, 5) is None  # the second session
    assert plan.for_request("b", 120.0, "ping", None, 5) is None


def test_session_lost_counts_from_the_session_start():
    plan = FaultPlan(fault_config(["session-lost=2s"]))
    assert plan.for_request("s", 10.0, "tools/list", None, 1) is None
    action = plan.for_request("s", 12.5, "tools/list", None, 2)
    assert action is not None and action.action == "404"
    assert plan.for_request(None, 30.0, "initialize", None, 3) is None  # no session: no 404


STREAM = (b": ping\r\n\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\n: ping\r\n\r\n"
          b"id: 2\r\nevent: message\r\ndata: x\r\n\r\ndata: y\n\n")


def _filtered(specs, data, step):
    stream = StreamFilter(FaultPlan(fault_config(specs)), "s", 0.0)
    out = b""
    injections = []
    for i in range(0, len(data), step):
        result = stream.feed(data[i:i + step], 1.0)
        out += result.data
        injections += result.injections
        if result.close:
            return out, injections, True
    result = stream.feed(b"", 2.0)
    return out + result.data, injections + list(result.injections), False


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(STREAM)])
def test_stream_filter_is_the_same_at_every_chunking(step):
    out, injections, _ = _filtered(["drop-heartbeats"], STREAM, step)
    assert out == (b"id: 1\r\ndata: {\"a\":1}\r\n\r\nid: 2\r\nevent: message\r\ndata: x\r\n\r\n"
                   b"data: y\n\n")
    assert [i.action for i in injections] == ["dropped-comment"] * 2
    out, injections, _ = _filtered(["strip-event-ids"], STREAM, step)
    assert b"id:" not in out and out.count(b"data:") == 3 and out.count(b": ping") == 2
    assert [i.detail["id"] for i in injections] == ["1", "2"]
    out, injections, closed = _filtered(["cut-stream=2"], STREAM, step)
    assert closed and out.endswith(b"data: x\r\n\r\n") and b"data: y" not in out
    assert [i.action for i in injections] == ["cut"]


def test_a_filter_without_changes_keeps_the_bytes():
    out, injections, _ = _filtered(["cut-stream=99"], STREAM + b"data: incomplete", 5)
    assert out == STREAM + b"data: incomplete" and injections == []


def test_buffer_holds_and_releases_in_bursts():
    stream = StreamFilter(FaultPlan(fault_config(["buffer=2s"])), "s", 0.0)
    assert stream.feed(b": a\n\n", 0.0).data == b""
    assert stream.feed(b": b\n\n", 1.0).data == b""
    burst = stream.feed(b": c\n\n", 2.5)
    assert burst.data == b": a\n\n: b\n\n: c\n\n"
    assert [i.action for i in burst.injections] == ["released"]
    assert stream.feed(b": d\n\n", 3.0).data == b""
    assert stream.feed(b"", 3.1).data == b": d\n\n"  # the end lets everything out


def test_idle_cut_expires_after_silence():
    stream = StreamFilter(FaultPlan(fault_config(["idle-cut=1s"])), "s", 0.0)
    stream.feed(b": a\n\n", 5.0)
    assert stream.idle_expired(5.9) is None
    injection = stream.idle_expired(6.1)
    assert injection is not None and injection.action == "idle-cut" and stream.cut


def test_legacy_responses_are_dropped_or_replaced():
    plan = FaultPlan(fault_config(["hang=tools/call:slow", "error=tools/call:echo:-32001"]))
    stream = StreamFilter(plan, "stream:1", 0.0)
    stream.feed(b"event: endpoint\r\ndata: /messages/?session_id=abc\r\n\r\n", 0.0)
    assert stream.legacy_session == "abc"
    hang = plan.for_request("abc", 1.0, "tools/call", "slow", 7)
    error = plan.for_request("abc", 1.0, "tools/call", "echo", 8)
    assert hang is not None and error is not None
    stream.response_actions["7"] = hang
    stream.response_actions["8"] = error
    out = stream.feed(b'event: message\r\ndata: {"jsonrpc":"2.0","id":7,"result":{}}\r\n\r\n'
                      b'event: message\r\ndata: {"jsonrpc":"2.0","id":8,"result":{}}\r\n\r\n',
                      2.0)
    assert b'"id":7' not in out.data
    assert b'"code":-32001' in out.data and out.data.startswith(b"event: message\r\ndata: ")
    assert [i.action for i in out.injections] == ["dropped-response", "replaced-response"]


def test_every_kind_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    for kind in FAULT_KINDS.values():
        assert f"`{kind.name}{kind.grammar}`" in readme, kind.name
        assert f"`{kind.flags[0]}`" in readme


def test_flags_are_marked_injected_by_kind_session_and_time():
    from recorder.faults import is_injected, mark_injected
    from recorder.model import Flag

    rows = [{"id": 7, "t": 100.0, "kind": "cut-stream", "spec": "cut-stream=3",
             "action": "cut", "stream_id": 4}]
    truncated = Flag("stream-truncated", "warning", 100.2, "cut", stream_id=4, session_id=1)
    marked = mark_injected(truncated, rows)
    assert marked.details["injected"] == {"spec": "cut-stream=3", "action": "cut",
                                          "injection": 7}
    # Another kind, or a flag long before the injection, is natural.
    assert not is_injected(mark_injected(
        Flag("heartbeat-missing", "warning", 100.2, "quiet", session_id=1), rows))
    assert not is_injected(mark_injected(
        Flag("stream-truncated", "warning", 50.0, "cut", stream_id=9, session_id=1), rows))
