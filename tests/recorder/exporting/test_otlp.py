"""OTLP/JSON export of real recordings: names, kinds, attributes, parentage, events, metrics."""

from __future__ import annotations

import orjson
import pytest

from recorder import otel
from recorder.cli import main as ssetap
from recorder.store import Capture
from tests.recorder.exporting.conftest import TRANSPORTS
from tests.sdk_peers import DEMO_PROTOCOL, FIRST_METHOD


def value(v: dict) -> object:
    (kind, inner), = v.items()
    return int(inner) if kind == "intValue" else inner


def attrs(items: list[dict]) -> dict[str, object]:
    return {a["key"]: value(a["value"]) for a in items}


def c_err(span: dict) -> str:
    return str(attrs(span["attributes"]).get("error.type", ""))


def export_lines(db, tmp_path) -> list[dict]:
    out = tmp_path / "capture.otlp.jsonl"
    assert ssetap(["export", str(db), "--format", "otlp", "-o", str(out)]) == 0
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


@pytest.mark.parametrize("name", list(TRANSPORTS))
def test_otlp_spans_follow_the_mcp_conventions(recorded, name, tmp_path):
    db = recorded(name)
    lines = export_lines(db, tmp_path)
    traces = [line for line in lines if "resourceSpans" in line]
    metrics = [line for line in lines if "resourceMetrics" in line]
    assert len(metrics) == 1
    spans = [s for t in traces for rs in t["resourceSpans"] for ss in rs["scopeSpans"]
             for s in ss["spans"]]
    with Capture(db) as capture:
        (session,) = capture.sessions()
        calls = capture.calls(session["id"])
        streams = capture.streams(session["id"])
    sessions = [s for s in spans if s["name"] == "mcp.session"]
    stream_spans = [s for s in spans if s["name"].startswith("mcp.sse_stream ")]
    call_spans = [s for s in spans if s not in sessions and s not in stream_spans]
    assert len(sessions) == 1 and len(stream_spans) == len(streams)
    assert len(call_spans) == len(calls)
    root = sessions[0]
    assert "parentSpanId" not in root
    names = {s["name"] for s in call_spans}
    assert {FIRST_METHOD, "tools/list", "tools/call echo", "tools/call add",
            "tools/call countdown", "tools/call slow", "tools/call fail",
            "resources/read"} <= names, names
    for span in call_spans:
        a = attrs(span["attributes"])
        assert span["kind"] == otel.KIND_CLIENT
        assert span["traceId"] == root["traceId"] and span["parentSpanId"] == root["spanId"]
        assert span["name"].split(" ")[0] == a["mcp.method.name"]
        assert a["network.transport"] == "tcp" and a["server.address"] == "127.0.0.1"
        assert isinstance(a["server.port"], int)
        if a["mcp.method.name"] == "tools/call":
            assert a["gen_ai.operation.name"] == "execute_tool"
            assert span["name"] == f"tools/call {a['gen_ai.tool.name']}"
        # ERROR exactly when error.type is set, described by the error's message.
        assert (span["status"]["code"] == otel.STATUS_ERROR) == ("error.type" in a)
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
    by_name = {s["name"]: s for s in call_spans}
    assert attrs(by_name["tools/call fail"]["attributes"])["error.type"] == "tool_error"
    rpc_errors = [s for s in call_spans if c_err(s).lstrip("-").isdigit()]
    assert {s["name"] for s in rpc_errors} >= {"resources/read"}
    assert len(rpc_errors) == len([c for c in calls if c["outcome"] == "error"])
    assert all(s["status"]["message"] for s in rpc_errors)
    slow = by_name["tools/call slow"]
    assert int(slow["endTimeUnixNano"]) - int(slow["startTimeUnixNano"]) >= 500_000_000
    assert attrs(root["attributes"])["mcp.protocol.version"] == DEMO_PROTOCOL
    # The pseudonymised session id; sessionless traffic (stateless servers, 2026-07-28) has none.
    prefix, _, session_id = session["key"].partition(":")
    if prefix in ("sid", "legacy"):
        assert attrs(root["attributes"])["mcp.session.id"] == session_id
    else:
        assert "mcp.session.id" not in attrs(root["attributes"])
    assert (name == "streamable-stateless") <= (prefix == "anon")
    # Heartbeats are events of the stream that carried them.
    beats = sum(len([e for e in s["events"] if e["name"] == "sse.heartbeat"])
                for s in stream_spans)
    assert beats == min(sum(s["comments"] for s in streams), beats)
    if name == "legacy-sse":
        assert beats >= 2
    # The histogram: one count per answered call, in seconds.
    (metric,) = metrics[0]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    assert metric["name"] == "mcp.client.operation.duration" and metric["unit"] == "s"
    points = metric["histogram"]["dataPoints"]
    assert sum(int(p["count"]) for p in points) == len([c for c in calls if c["answered_at"]])
    for p in points:
        assert sum(int(c) for c in p["bucketCounts"]) == int(p["count"])


def test_trace_parent_comes_from_params_meta():
    session = otel.SessionFacts(id=1, key="sid:abc", transport="streamable-http",
                                server="http://127.0.0.1:9", started_at=100.0)
    request = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "echo", "_meta": {"traceparent":
                                  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}
    call = otel.CallFacts(call_id=7, direction="c2s", rpc_id="3", method="tools/call",
                          sent_at=101.0, answered_at=101.5, outcome="result", request=request,
                          response={"jsonrpc": "2.0", "id": 3, "result": {"content": []}})
    span = otel.call_span(call, session)
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "b7ad6b7169203331"
    assert span.name == "tools/call echo" and span.status_code == otel.STATUS_UNSET
    assert dict(span.attributes)["mcp.session.id"] == "abc"
    # A malformed or all-zero traceparent is ignored: the session is the parent.
    for bad in ("00-00000000000000000000000000000000-b7ad6b7169203331-01", "garbage"):
        request["params"]["_meta"]["traceparent"] = bad
        assert otel.call_span(call, session).parent_span_id == otel.session_span_id(session)


def test_capture_gaps_become_span_events_of_their_stream():
    session = otel.SessionFacts(id=1, key="sid:abc", transport="sse",
                                server="http://127.0.0.1:9", started_at=100.0)
    stream = otel.StreamFacts(id=4, role="legacy", method="GET", opened_at=100.0,
                              closed_at=110.0, close_reason="end", heartbeats=(101.0, 102.0))
    gap = otel.gap_finding({"reason": "backlog-full", "bytes": 4096, "chunks": 3, "events": 7,
                            "started_at": 103.0, "ended_at": 104.5, "stream_id": 4})
    span = otel.stream_span(stream, session, [gap])
    assert [e.name for e in span.events] == ["sse.heartbeat", "sse.heartbeat",
                                             "ssetap.capture_gap"]
    attributes = dict(span.events[-1].attributes)
    assert attributes["ssetap.gap.reason"] == "backlog-full"
    assert attributes["ssetap.gap.events"] == 7 and attributes["ssetap.gap.bytes"] == 4096
    assert span.parent_span_id == otel.session_span_id(session)


def test_live_spans_carry_flags_and_capture_gaps_of_their_stream():
    from recorder.events import (
        SessionOpened,
        SseSeen,
        StreamClosed,
        StreamCounters,
        StreamOpened,
    )
    from recorder.otel_live import LiveSpans

    spans: list[otel.Span] = []
    live = LiveSpans(spans.append)
    live(SessionOpened(1, "sid:abc", "sse", "http://127.0.0.1:9", "/sse", 100.0, 100.0, None,
                       None))
    live(StreamOpened(5, 2, 1, "GET", "legacy", None, 100.1, None))
    live(SseSeen(1, 5, 1, 100.5, "comment", None, "ping", None, None, None, 0, 8))
    live.gap({"stream_id": 5, "session_id": 1, "reason": "overload", "bytes": 10, "chunks": 1,
              "events": 2, "started_at": 101.0, "ended_at": 102.0})
    live.flag({"stream_id": None, "session_id": 1, "t": 103.0, "kind": "lost-session",
               "severity": "error", "message": "gone", "call_id": None})
    live(StreamClosed(104.0, 5, 1, "end",
                      StreamCounters(104.0, 5, 99, 1, 0, 1, 0.0, False, None, 100.5)))
    live.close(105.0)
    stream = next(s for s in spans if s.name == "mcp.sse_stream legacy")
    assert [e.name for e in stream.events] == ["sse.heartbeat", "ssetap.capture_gap"]
    session = next(s for s in spans if s.name == "mcp.session")
    assert [dict(e.attributes)["ssetap.flag.kind"] for e in session.events] == ["lost-session"]
    assert stream.parent_span_id == session.span_id and stream.end == 104.0


def test_live_call_spans_follow_the_correlators_call_events():
    """A call's span: its request and answer payloads from the messages, its pairing, late
    answers and progress from the call events; an unanswered call goes out as pending."""
    from recorder.events import (
        CallAnswered,
        CallCancelled,
        CallOpened,
        CallProgressed,
        MessageSeen,
        SessionOpened,
    )
    from recorder.otel_live import LiveSpans

    spans: list[otel.Span] = []
    live = LiveSpans(spans.append)
    live(SessionOpened(1, "sid:abc", "streamable-http", "http://127.0.0.1:9", "/mcp", 100.0,
                       100.0, None, None))
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "add", "_meta": {"progressToken": 7}}}
    live(MessageSeen(1, 1, 1, None, None, 100.0, "c2s", "request", "1", "tools/call", None,
                     "{}", None, 1, request))
    live(CallOpened(1, 1, "c2s", "1", "tools/call", "add", 1, 100.0, "pending", "7"))
    live(MessageSeen(2, 1, 1, 3, 4, 100.2, "s2c", "notification", None,
                     "notifications/progress", None, "{}", None, 1, {}))
    live(CallProgressed(100.2, 1, 1, 1))
    live(MessageSeen(3, 1, 2, None, None, 100.3, "c2s", "notification", None,
                     "notifications/cancelled", None, "{}", None, 1, {}))
    live(CallCancelled(100.3, 1, 1, 3, "user"))
    answer = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "stopped"}}
    live(MessageSeen(4, 1, 1, 3, 5, 100.5, "s2c", "error", "1", None, None, "{}", None, 1,
                     answer))
    live(CallAnswered(100.5, 1, 1, 4, 500.0, None, -32000, "stopped", True))
    live(MessageSeen(5, 1, 1, None, None, 101.0, "c2s", "request", "2", "tools/list", None,
                     "{}", None, 2, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
    live(CallOpened(2, 1, "c2s", "2", "tools/list", None, 5, 101.0, "pending", None))
    live.close(102.0)
    calls = [s for s in spans if s.name.startswith("tools/")]
    assert [s.name for s in calls] == ["tools/call add", "tools/list"]
    answered, pending = (dict(s.attributes) for s in calls)
    assert answered["ssetap.call.outcome"] == "error"
    assert answered["rpc.response.status_code"] == "-32000"
    assert answered["ssetap.call.progress_count"] == 1
    assert [e.name for e in calls[0].events] == ["mcp.cancelled"]
    assert calls[0].end == 100.5
    assert pending["ssetap.call.outcome"] == "pending"
