"""`ssetap record --fault` in front of the TypeScript SDK's server-everything (npm).

It differs from the Python SDK's server where faults on streams matter: it keeps an event
store and gives every SSE event an id, so a client can resume a cut stream. The Python SDK
(v1) client against it, through the recording proxy.
"""

from __future__ import annotations

import pytest

from tests.recorder.capture_query import q
from tests.recorder.fault_helpers import LOST_CALL, call, check, run_client, serious
from tests.recorder.test_ts_peer_e2e import ENTRY, NODE, everything  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not (NODE and ENTRY.exists()),
                       reason="node or @modelcontextprotocol/server-everything missing"),
]

# server-everything answers with `Access-Control-Allow-Origin: *`: a natural finding of the
# server itself, never injected.
NATURAL = ("wildcard-cors", False)


def _long_call(progress: list[float]):
    async def scenario(session):
        return await call(session, "trigger-long-running-operation",
                          {"duration": 1.0, "steps": 5}, progress)

    return scenario


def test_cut_stream_the_client_resumes_with_a_stale_event_id(record, everything):  # noqa: F811
    rec = record(everything("streamableHttp"), "--fault", "cut-stream=3")
    progress: list[float] = []
    seen = run_client(rec.url + "/mcp", "streamable-http", _long_call(progress), timeout=6.0)
    assert rec.stop() == 0
    # The POST stream is cut after 3 events (a priming event, two progress notifications);
    # the client resumes with GET + Last-Event-ID and gets the rest, but each resumed stream
    # is cut too (every response stream is), before the response. The client resumes again
    # with the *same* Last-Event-ID it first sent, so it sees progress 3-5 twice, and at
    # last gives up at its read timeout.
    assert seen == LOST_CALL
    assert progress[:5] == [1.0, 2.0, 3.0, 4.0, 5.0] and progress[5:8] == [3.0, 4.0, 5.0]
    resumes = q(rec.db, "SELECT last_event_id_sent FROM streams WHERE role = 'resume'")
    assert len(resumes) >= 2 and len({r[0] for r in resumes}) == 1
    assert len(q(rec.db, "SELECT id FROM injections WHERE action = 'cut'")) == 1 + len(resumes)
    _, report = check(rec.db)
    # The client resumed each cut within the grace: no stream-truncated. (That it resumed
    # with a stale id is not something the detectors flag yet.)
    assert serious(report) == [NATURAL]


def test_strip_event_ids_then_a_cut_stream_cannot_be_resumed(record, everything):  # noqa: F811
    rec = record(everything("streamableHttp"), "--fault", "cut-stream=3",
                 "--fault", "strip-event-ids")
    progress: list[float] = []
    seen = run_client(rec.url + "/mcp", "streamable-http", _long_call(progress), timeout=3.0)
    assert rec.stop() == 0
    assert seen == LOST_CALL and progress == [1.0, 2.0]  # no id: no resumption
    assert q(rec.db, "SELECT count(*) FROM streams WHERE role = 'resume'") == [(0,)]
    assert q(rec.db, "SELECT count(*) FROM sse_events WHERE event_id IS NOT NULL") == [(0,)]
    stripped = q(rec.db, "SELECT count(*) FROM injections WHERE action = 'stripped-id'")[0][0]
    assert stripped >= 3
    _, report = check(rec.db)
    assert serious(report) == [("stream-truncated", True), NATURAL]
