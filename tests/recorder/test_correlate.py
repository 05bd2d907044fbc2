"""Correlation: pairs by (session, direction, id with its type), progress, cancellation."""

from __future__ import annotations

from recorder.correlate import Correlator
from recorder.jsonrpc import decode


def msg(obj: str):
    (m,) = decode(obj)
    return m


def test_request_and_response_pair_across_streams_and_ids_keep_their_type():
    c = Correlator()
    first = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":1,"method":"tools/list"}'), 10.0, 1, 100)
    second = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":"1","method":"ping"}'), 10.1, 2, 101)
    assert first.new and second.new and second.event is None  # 1 and "1" differ
    answer = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":"1","result":{}}'), 10.3, 3, 0)
    assert answer.call is second.call and answer.changes["latency_ms"] == 200.0
    assert answer.changes["outcome"] == "result"


def test_directions_number_independently():
    c = Correlator()
    client = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":0,"method":"initialize"}'), 1.0, 1, 10)
    server = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":0,"method":"roots/list"}'), 1.1, 2, 11)
    reply = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":0,"result":{"roots":[]}}'), 1.2, 3, 0)
    assert reply.call is server.call
    done = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":0,"result":{}}'), 1.3, 4, 0)
    assert done.call is client.call


def test_sessions_do_not_mix():
    c = Correlator()
    c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":1,"method":"ping"}'), 1.0, 1, 10)
    orphan = c.observe(2, "s2c", msg('{"jsonrpc":"2.0","id":1,"result":{}}'), 1.1, 2, 0)
    assert orphan.call is None and orphan.event == "orphan"


def test_progress_links_by_token_and_cancel_then_late_response():
    c = Correlator()
    req = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":'
                                  '{"name":"x","_meta":{"progressToken":7}}}'), 1.0, 1, 10)
    prog = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","method":"notifications/progress",'
                                   '"params":{"progressToken":7,"progress":1}}'), 1.5, 2, 0)
    assert prog.call is req.call and prog.changes["progress_count"] == 1
    cancel = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","method":"notifications/cancelled",'
                                     '"params":{"requestId":7,"reason":"timeout"}}'), 2.0, 3, 0)
    assert cancel.changes["outcome"] == "cancelled" and cancel.changes["cancel_reason"] == "timeout"
    late = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":7,"result":{}}'), 3.0, 4, 0)
    assert late.event == "late" and late.changes["late"] == 1 and "outcome" not in late.changes


def test_duplicate_ids_and_errors():
    c = Correlator()
    c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":1,"method":"a"}'), 1.0, 1, 10)
    dup = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":1,"method":"b"}'), 1.1, 2, 11)
    assert dup.event == "duplicate-id" and dup.previous is not None
    err = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}'), 1.2, 3, 0)
    assert err.call is dup.call
    assert err.changes["outcome"] == "error" and err.changes["error_code"] == -32601


def test_batches_decode_to_several_messages():
    messages = decode('[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"}]')
    assert [(m.kind, m.batch_index) for m in messages] == [("request", 0), ("notification", 1)]
    assert decode("  ") == []
    assert decode("{bad")[0].kind == "invalid"
