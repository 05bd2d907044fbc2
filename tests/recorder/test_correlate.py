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
    assert first.new and second.new and second.event.replaced is None  # 1 and "1" differ
    answer = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":"1","result":{}}'), 10.3, 3, 0)
    assert answer.call is second.call and answer.event.latency_ms == 200.0
    assert answer.event.outcome == "result" and answer.event.call_id == 101


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
    assert orphan.call is None and orphan.event.what == "orphan"


def test_progress_links_by_token_and_cancel_then_late_response():
    c = Correlator()
    req = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":'
                                  '{"name":"x","_meta":{"progressToken":7}}}'), 1.0, 1, 10)
    prog = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","method":"notifications/progress",'
                                   '"params":{"progressToken":7,"progress":1}}'), 1.5, 2, 0)
    assert prog.call is req.call and prog.event.progress_count == 1 and prog.event.call_id == 10
    cancel = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","method":"notifications/cancelled",'
                                     '"params":{"requestId":7,"reason":"timeout"}}'), 2.0, 3, 0)
    assert cancel.event.cancel_reason == "timeout" and cancel.call.outcome == "cancelled"
    late = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":7,"result":{}}'), 3.0, 4, 0)
    assert late.event.late and late.event.outcome is None and late.call.outcome == "cancelled"
    again = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":7,"result":{}}'), 3.1, 5, 0)
    assert again.event.what == "orphan" and again.event.call_id == 10  # already answered


def test_duplicate_ids_and_errors():
    c = Correlator()
    c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":1,"method":"a"}'), 1.0, 1, 10)
    dup = c.observe(1, "c2s", msg('{"jsonrpc":"2.0","id":1,"method":"b"}'), 1.1, 2, 11)
    assert dup.event.replaced == 10
    err = c.observe(1, "s2c", msg('{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}'), 1.2, 3, 0)
    assert err.call is dup.call
    assert err.event.outcome == "error" and err.event.error_code == -32601
    assert err.event.error_message == "nope"


def test_batches_decode_to_several_messages():
    messages = decode('[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"}]')
    assert [(m.kind, m.batch_index) for m in messages] == [("request", 0), ("notification", 1)]
    assert decode("  ") == []
    assert decode("{bad")[0].kind == "invalid"
