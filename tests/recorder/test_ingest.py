"""The ingest core, script-style: raw proxy facts in, capture rows out (real SQLite file)."""

from __future__ import annotations

from pathlib import Path

from recorder.events import Event, MessageSeen, SseSeen, StreamOpened
from recorder.ingest import Ingest
from recorder.redact import Redactor
from recorder.store import Capture, StoreWriter

JSON = [("Content-Type", "application/json")]
SSE = [("Content-Type", "text/event-stream")]


def run(tmp_path: Path, events: list[tuple], raw: bool = False) -> tuple[Capture, list[Event]]:
    writer = StoreWriter(tmp_path / "c.db")
    seen: list[Event] = []
    ingest = Ingest(writer, Redactor(None if raw else b"k" * 32), [seen.append])
    for event in events:
        ingest.feed(event)
    ingest.close(1000.0)
    writer.close()
    return Capture(tmp_path / "c.db"), seen


def post(flow, t, body, headers=()):
    return ("q", flow, t, "POST", "http://s:1/mcp", "HTTP/1.1", [*JSON, *headers], body.encode(), "127.0.0.1:5000")


def test_answer_on_a_resumed_get_pairs_with_the_post(tmp_path):
    sid = [("Mcp-Session-Id", "a" * 32)]
    capture, _ = run(tmp_path, [
        post("f1", 1.0, '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"c"}}}'),
        ("h", "f1", 1.1, 200, "OK", [*JSON, *sid], True),
        ("c", "f1", 1.1, b'{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","serverInfo":{"name":"s"}}}'),
        ("e", "f1", 1.2, None),
        post("f2", 2.0, '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}', sid),
        ("h", "f2", 2.1, 200, "OK", [*SSE, *sid], True),
        ("c", "f2", 2.1, b"id: 1\ndata: \n\n"),
        ("x", "f2", 2.5, "peer closed connection"),  # the POST stream drops before the answer
        ("q", "f3", 3.0, "GET", "http://s:1/mcp", "HTTP/1.1", [*sid, ("Last-Event-ID", "1")], None, "127.0.0.1:5001"),
        ("h", "f3", 3.1, 200, "OK", [*SSE, *sid], True),
        ("c", "f3", 3.2, b'id: 2\ndata: {"jsonrpc":"2.0","id":1,"result":{"content":[]}}\n\n'),
        ("x", "f3", 4.0, "Client disconnected."),
    ])
    (session,) = capture.sessions()
    assert (session["client_name"], session["server_name"], session["protocol_version"]) == ("c", "s", "2025-11-25")
    calls = capture.calls(session["id"])
    assert [(c["method"], c["outcome"], round(c["latency_ms"])) for c in calls] == [
        ("initialize", "result", 100), ("tools/call", "result", 1200)]
    streams = capture.streams(session["id"])
    assert [(s["role"], s["close_reason"]) for s in streams] == [("post", "error"), ("resume", "client-disconnect")]
    assert streams[1]["last_event_id_sent"] == "1"
    assert session["started_at"] == 1.0


def test_legacy_answer_before_the_posts_202_and_endpoint_session(tmp_path):
    capture, seen = run(tmp_path, [
        ("q", "g", 1.0, "GET", "http://s:1/sse", "HTTP/1.1", [("Accept", "text/event-stream")], None, "c:1"),
        ("h", "g", 1.0, 200, "OK", SSE, True),
        ("c", "g", 1.01, b"event: endpoint\r\ndata: /messages/?session_id=" + b"b" * 32 + b"\r\n\r\n"),
        ("q", "p", 1.1, "POST", "http://s:1/messages/?session_id=" + "b" * 32, "HTTP/1.1", JSON,
         b'{"jsonrpc":"2.0","id":0,"method":"ping"}', "c:2"),
        ("c", "g", 1.15, b'event: message\r\ndata: {"jsonrpc":"2.0","id":0,"result":{}}\r\n\r\n'),
        ("h", "p", 1.2, 202, "Accepted", [], True),
        ("c", "p", 1.2, b"Accepted"),
        ("e", "p", 1.2, None),
    ])
    (session,) = capture.sessions()
    assert session["transport"] == "sse" and session["key"].startswith("legacy:")
    assert "b" * 32 not in session["key"]
    (call,) = capture.calls(session["id"])
    assert call["outcome"] == "result" and round(call["latency_ms"]) == 50
    kinds = [type(o) for o in seen]
    assert kinds.index(StreamOpened) < kinds.index(SseSeen) < kinds.index(MessageSeen)


def test_a_secret_split_across_chunks_is_scrubbed_and_offsets_hold(tmp_path):
    sid = b"c" * 32
    stream = b"event: endpoint\ndata: /messages/?session_id=" + sid + b"\n\n: ping\n\n"
    cut = stream.index(sid) + 10
    capture, _ = run(tmp_path, [
        ("q", "g", 1.0, "GET", "http://s:1/sse", "HTTP/1.1", [], None, "c:1"),
        ("h", "g", 1.0, 200, "OK", SSE, True),
        ("c", "g", 1.1, stream[:cut]),
        ("c", "g", 1.2, stream[cut:]),
        ("e", "g", 2.0, None),
    ])
    (st,) = capture.streams(1)
    chunks = capture.chunks(st["id"])
    assert [c["t"] for c in chunks] == [1.1, 1.2] and [c["offset"] for c in chunks] == [0, cut]
    raw = b"".join(c["data"] for c in chunks)
    assert len(raw) == len(stream) and sid not in raw
    comment = [e for e in capture.sse_events(st["id"]) if e["kind"] == "comment"][0]
    assert raw[comment["start"]:comment["end"]] == b": ping\n"


def test_stateless_requests_group_by_client_and_split_at_initialize(tmp_path):
    def exchange(flow, t, body, answer):
        return [post(flow, t, body), ("h", flow, t + 0.01, 200, "OK", JSON, True),
                ("c", flow, t + 0.01, answer.encode()), ("e", flow, t + 0.02, None)]

    init = '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}'
    ok = '{"jsonrpc":"2.0","id":0,"result":{}}'
    listing = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    capture, _ = run(tmp_path, [
        *exchange("a", 1.0, init, ok), *exchange("b", 1.1, listing, ok.replace('"id":0', '"id":1')),
        *exchange("c", 5.0, init, ok),
    ])
    sessions = capture.sessions()
    assert [(s["key"], s["requests"], s["answered"]) for s in sessions] == [
        ("anon:1", 2, 2), ("anon:2", 1, 1)]


def test_gzip_encoded_sse_is_inflated_for_parsing_and_stored_as_sent(tmp_path):
    import zlib

    packer = zlib.compressobj(wbits=31)
    body = b'data: {"jsonrpc":"2.0","method":"notifications/message"}\n\n: ping\n\n'
    wire = packer.compress(body) + packer.flush()
    capture, _ = run(tmp_path, [
        ("q", "g", 1.0, "GET", "http://s:1/mcp", "HTTP/1.1", [("Mcp-Session-Id", "a" * 32)], None, "c:1"),
        ("h", "g", 1.0, 200, "OK", [*SSE, ("Content-Encoding", "gzip")], True),
        ("c", "g", 1.1, wire[:10]), ("c", "g", 1.2, wire[10:]), ("e", "g", 2.0, None),
    ], raw=True)
    (stream,) = capture.streams(1)
    assert stream["content_encoding"] == "gzip" and (stream["events"], stream["comments"]) == (1, 1)
    assert b"".join(c["data"] for c in capture.chunks(stream["id"])) == wire


def test_sessionless_get_answered_405_stays_in_its_session(tmp_path):
    """A stateless server's client opens the standalone GET without a session id (the TS
    SDK, mcp-remote): the 405 belongs to that client's session, for show, the TUI and serve."""
    init = '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}'
    capture, _ = run(tmp_path, [
        post("a", 1.0, init), ("h", "a", 1.01, 200, "OK", JSON, True),
        ("c", "a", 1.01, b'{"jsonrpc":"2.0","id":0,"result":{}}'), ("e", "a", 1.02, None),
        ("q", "g", 1.1, "GET", "http://s:1/mcp", "HTTP/1.1", [("Accept", "text/event-stream")],
         None, "127.0.0.1:5001"),
        ("h", "g", 1.11, 405, "Method Not Allowed", [("Allow", "POST")], False),
        ("e", "g", 1.12, None),
        # Another client (another user agent) with no session yet: its GET is left alone.
        ("q", "o", 1.2, "GET", "http://s:1/mcp", "HTTP/1.1",
         [("Accept", "text/event-stream"), ("User-Agent", "other")], None, "127.0.0.1:5002"),
        ("h", "o", 1.21, 405, "Method Not Allowed", [("Allow", "POST")], False),
        ("e", "o", 1.22, None),
    ])
    (session,) = capture.sessions()
    exchanges = capture.exchanges(session["id"])
    assert [(e["method"], e["status"]) for e in exchanges] == [("POST", 200), ("GET", 405)]
