"""The live OTLP push: batching, retries with backoff, drop-and-count, and a real recording."""

from __future__ import annotations

import time

import orjson
import pytest

from recorder import otel
from recorder.otlp_push import OtlpPusher, PushOptions
from recorder.store import Capture
from tests.recorder.exporting.conftest import record_session_output
from tests.recorder.exporting.otlp_receiver import Receiver
from tests.sdk_peers import FIRST_METHOD


def capture_text(db) -> str:
    with Capture(db) as capture:
        return str(capture.meta())


def span(i: int) -> otel.Span:
    return otel.Span(trace_id=f"{i:032x}", span_id=f"{i + 1:016x}", parent_span_id=None,
                     name=f"tools/call t{i}", kind=otel.KIND_CLIENT, start=1.0, end=2.0,
                     attributes=(("mcp.method.name", "tools/call"), ("n", i)))


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def factory(**options) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield factory
    for r in made:
        r.stop()


def test_batches_arrive_with_the_auth_header(receiver):
    r = receiver()
    pusher = OtlpPusher(PushOptions(endpoint=r.url, headers=(("Authorization", "Bearer k"),),
                                    batch_size=10, batch_seconds=0.05))
    for i in range(25):
        pusher.submit(span(i))
    counts = pusher.close()
    assert (counts.sent, counts.dropped, counts.failed) == (25, 0, 0)
    assert len(r.requests) >= 3  # batches of at most 10
    assert all(len(rs.scope_spans[0].spans) <= 10 for q in r.requests for rs in q.resource_spans)
    assert {h["authorization"] for h in r.headers} == {"Bearer k"}
    assert {h["content-type"] for h in r.headers} == {"application/x-protobuf"}
    names = sorted(s.name for _, s in r.spans())
    assert names == sorted(f"tools/call t{i}" for i in range(25))
    resource = {a.key: a.value.string_value for a in r.spans()[0][0].attributes}
    assert resource["service.name"] == "ssetap" and resource["service.instance.id"]


def test_retries_with_backoff_then_succeeds(receiver):
    r = receiver(fail_first=2, status=503)
    pusher = OtlpPusher(PushOptions(endpoint=r.url, batch_seconds=0.01, backoff=0.05))
    pusher.submit(span(1))
    counts = pusher.close()
    assert (counts.sent, counts.failed) == (1, 0)
    assert r.attempts == 3


def test_refused_data_is_not_retried_and_counts_as_failed(receiver):
    r = receiver(fail_first=100, status=400)
    pusher = OtlpPusher(PushOptions(endpoint=r.url, batch_seconds=0.01, backoff=0.05))
    pusher.submit(span(1))
    counts = pusher.close()
    assert (counts.sent, counts.failed) == (0, 1) and r.attempts == 1
    assert counts.last_error == "HTTP 400"


def test_unreachable_backend_fails_and_counts(receiver):
    r = receiver()
    url = r.url
    r.stop()  # nothing listens there now
    pusher = OtlpPusher(PushOptions(endpoint=url, batch_seconds=0.01, backoff=0.01, retries=2))
    pusher.submit(span(1))
    counts = pusher.close()
    assert (counts.sent, counts.failed) == (0, 1)
    assert counts.last_error and "Connect" in counts.last_error


def test_a_stalled_backend_drops_and_counts_instead_of_blocking(receiver):
    r = receiver(stall=1.0)
    pusher = OtlpPusher(PushOptions(endpoint=r.url, queue_size=5, batch_size=1,
                                    batch_seconds=0.01, timeout=5))
    started = time.monotonic()
    for i in range(200):
        pusher.submit(span(i))
    # submit never waits on the backend: 200 spans in well under one stalled request.
    assert time.monotonic() - started < 0.9
    counts = pusher.close(timeout=3)
    assert counts.dropped >= 150
    assert counts.sent + counts.dropped + counts.failed == 200


@pytest.mark.parametrize("name", ["legacy-sse", "streamable-sse"])
def test_live_recording_pushes_spans(receiver, tmp_path, capfd, name):
    r = receiver()
    # Live flags (slow(0.5 s) outlives a 0.25 s request timeout on v1; error responses) are
    # pushed as span events.
    db, output = record_session_output(tmp_path / "live.db", name, "--otlp-endpoint", r.url,
                                       "--otlp-header", "X-Api-Key=s3cret",
                                       "--request-timeout", "0.25s")
    spans = [s for _, s in r.spans()]
    names = [s.name for s in spans]
    assert names.count("mcp.session") == 1
    assert {FIRST_METHOD, "tools/call echo", "tools/call slow", "tools/call fail"} <= set(names)
    with Capture(db) as capture:
        (session,) = capture.sessions()
        calls = capture.calls(session["id"])
        pushed = orjson.loads(capture.meta()["otlp_push"])
    assert len([n for n in names if not n.startswith("mcp.")]) == len(calls)
    root = next(s for s in spans if s.name == "mcp.session")
    for s in spans:
        if s is not root:
            assert s.trace_id == root.trace_id and s.parent_span_id == root.span_id
    fail = next(s for s in spans if s.name == "tools/call fail")
    attrs = {a.key: a.value for a in fail.attributes}
    assert attrs["error.type"].string_value == "tool_error" and fail.status.code == 2
    assert attrs["gen_ai.tool.name"].string_value == "fail"
    assert {h["x-api-key"] for h in r.headers} == {"s3cret"}
    assert pushed["sent"] == len(spans) and pushed["dropped"] == pushed["failed"] == 0
    # The console summary says it too; the header's value is in neither.
    assert f"otlp push to {r.url}: {len(spans)} spans sent, 0 dropped, 0 failed" in output
    assert "s3cret" not in output and "s3cret" not in capture_text(db)
    flagged = [(s.name, {a.key: a.value.string_value for a in e.attributes})
               for s in spans for e in s.events if e.name == "ssetap.flag"]
    with Capture(db) as capture:
        live_flags = [f for f in capture.flags() if f["source"] == "live"]
    assert live_flags and len(flagged) == len(live_flags)
    assert sorted(a["ssetap.flag.kind"] for _, a in flagged) == \
        sorted(f["kind"] for f in live_flags)
    if name == "legacy-sse":
        get = next(s for s in spans if s.name == "mcp.sse_stream legacy")
        assert len([e for e in get.events if e.name == "sse.heartbeat"]) >= 2


def test_bad_otlp_options_are_one_line_errors(tmp_path, capsys):
    from recorder.cli import main as ssetap

    db = str(tmp_path / "x.db")
    for args, text in ((["--otlp-endpoint", "ftp://x"], "--otlp-endpoint needs an http(s) URL"),
                       (["--otlp-header", "A=b"], "--otlp-header needs --otlp-endpoint"),
                       (["--otlp-endpoint", "http://127.0.0.1:9", "--otlp-header", "novalue"],
                        "--otlp-header takes NAME=VALUE")):
        assert ssetap(["record", "--upstream", "http://127.0.0.1:9", "--db", db, *args]) == 2
        err = capsys.readouterr().err
        assert text in err and len(err.strip().splitlines()) == 1, err
