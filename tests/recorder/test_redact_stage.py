"""The redaction stage: every row that leaves ingest is redacted in one place."""

from __future__ import annotations

from typing import Any

import orjson

from recorder import json_paths
from recorder.redact import Redactor
from recorder.redact_stage import RedactionStage

KEY = b"k" * 32
TOKEN = "abcdefghijklmnop0123"


class ListSink:
    """Keeps what it is given (the store's sink interface)."""

    def __init__(self) -> None:
        self.inserted: list[tuple[str, dict[str, Any]]] = []
        self.updated: list[tuple[str, int, dict[str, Any]]] = []
        self._ids: dict[str, int] = {}

    def next_id(self, table: str) -> int:
        self._ids[table] = self._ids.get(table, 0) + 1
        return self._ids[table]

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self.inserted.append((table, row))

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        self.updated.append((table, row_id, changes))

    def everything(self) -> bytes:
        return orjson.dumps([self.inserted, self.updated], default=lambda b: b.decode("latin-1"))


def exchange(url: str = "http://127.0.0.1:1/mcp", body: bytes | None = None,
             headers: list[list[str]] | None = None, ctype: str = "application/json"
             ) -> dict[str, Any]:
    return {"id": 1, "url": url, "request_headers": orjson.dumps(headers or []).decode(),
            "request_body": body, "request_content_type": ctype}


def test_a_token_from_a_header_is_gone_from_the_same_requests_body_and_later_rows() -> None:
    sink = ListSink()
    stage = RedactionStage(sink, Redactor(KEY))
    stage.insert("exchanges", exchange(body=f'{{"echo": "{TOKEN}"}}'.encode(),
                                       headers=[["Authorization", f"Bearer {TOKEN}"]]))
    stage.insert("sse_events", {"id": 1, "data": f"you said {TOKEN}"})
    stage.insert("flags", {"id": 1, "message": f"odd token {TOKEN}"})  # a table it does not know
    stage.update("exchanges", 1, {"response_headers": orjson.dumps([["X-Echo", TOKEN]]).decode()})
    assert TOKEN.encode() not in sink.everything()


def test_a_secret_split_across_chunks_is_scrubbed_and_offsets_stay_true() -> None:
    sink = ListSink()
    stage = RedactionStage(sink, Redactor(KEY))
    stage.insert("exchanges", exchange(headers=[["Authorization", f"Bearer {TOKEN}"]]))
    first, second = f"data: {TOKEN[:7]}".encode(), f"{TOKEN[7:]}\n\n".encode()
    # Rows as the chunks table holds them (every column is NOT NULL).
    stage.insert("chunks", {"id": 1, "stream_id": 5, "seq": 0, "t": 1.0, "offset": 0,
                            "data": first})
    stage.insert("chunks", {"id": 2, "stream_id": 5, "seq": 1, "t": 1.0, "offset": len(first),
                            "data": second})
    assert [t for t, _ in sink.inserted].count("chunks") == 1  # the last one is held back
    stage.update("streams", 5, {"closed_at": 1.0})
    chunks = [row for table, row in sink.inserted if table == "chunks"]
    assert [len(c["data"]) for c in chunks] == [len(first), len(second)]
    joined = b"".join(c["data"] for c in chunks)
    assert TOKEN.encode() not in joined and joined.startswith(b"data: ")


def test_session_keys_become_their_pseudonyms() -> None:
    sink = ListSink()
    redactor = Redactor(KEY)
    stage = RedactionStage(sink, redactor)
    stage.insert("sessions", {"id": 1, "key": "sid:" + "9f1c" * 8})
    stage.insert("sessions", {"id": 2, "key": "anon:1"})
    keys = [row["key"] for _, row in sink.inserted]
    assert keys == ["sid:" + Redactor(KEY).session_id("9f1c" * 8), "anon:1"]


def test_raw_mode_passes_rows_through() -> None:
    sink = ListSink()
    stage = RedactionStage(sink, Redactor(None))
    row = exchange(headers=[["Authorization", f"Bearer {TOKEN}"]])
    stage.insert("exchanges", row)
    assert sink.inserted == [("exchanges", row)]


def test_redact_paths_choose_fields_of_tool_traffic() -> None:
    rules = json_paths.parse_rules("tools/call:login $.params.arguments.*\n"
                                   "$.params.arguments.password  # anywhere\n")
    sink = ListSink()
    stage = RedactionStage(sink, Redactor(KEY), rules)
    login = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": "login", "arguments": {"user": "ann-the-user", "pin": 1234}}}
    other = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "echo", "arguments": {"text": "keep me", "password": "pw-secret-1"}}}
    for message in (login, other):
        stage.insert("messages", {"id": message["id"], "json": orjson.dumps(message).decode()})
    stage.insert("exchanges", exchange(body=orjson.dumps(login)))
    stored = [orjson.loads(row["json"]) for t, row in sink.inserted if t == "messages"]
    assert stored[0]["params"]["arguments"]["user"].startswith("redacted:field:")
    assert stored[0]["params"]["arguments"]["pin"].startswith("redacted:field:")
    assert stored[1]["params"]["arguments"]["text"] == "keep me"
    assert stored[1]["params"]["arguments"]["password"].startswith("redacted:field:")
    body = [row for t, row in sink.inserted if t == "exchanges"][0]["request_body"]
    assert b"ann-the-user" not in body and b"login" in body


def test_path_syntax_matches_replays() -> None:
    tokens = json_paths.parse_path('$..token')
    assert json_paths.matches(tokens, ["params", "auth", "token"])
    assert json_paths.matches(json_paths.parse_path("$.result.content[0].text"),
                              ["result", "content", 0, "text"])
    assert json_paths.matches(json_paths.parse_path('$["a b"][*]'), ["a b", 3])
    assert not json_paths.matches(json_paths.parse_path("$.params.x"), ["params", "y"])


def test_ingest_stores_and_shows_observers_only_redacted_rows(tmp_path) -> None:
    from recorder.events import Event
    from recorder.ingest import Ingest
    from recorder.store import StoreWriter

    writer = StoreWriter(tmp_path / "c.db")
    seen: list[Event] = []
    ingest = Ingest(writer, Redactor(KEY), [seen.append])
    sid = [("Mcp-Session-Id", "9f1c" * 8)]
    ingest.feed(("q", "f1", 1.0, "POST", f"http://s:1/mcp?api_key={TOKEN}", "HTTP/1.1",
                 [("Content-Type", "application/json"), ("Authorization", f"Bearer {TOKEN}"), *sid],
                 b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}', "c:1"))
    ingest.feed(("h", "f1", 1.1, 200, "OK", [("Content-Type", "text/event-stream"), *sid,
                                             ("Set-Cookie", f"s={TOKEN[::-1]}; Path=/")], True))
    ingest.feed(("c", "f1", 1.2, f'data: {{"jsonrpc":"2.0","id":1,"result":{{"t":"{TOKEN}"}}}}\n\n'
                 .encode()))
    ingest.feed(("e", "f1", 1.3, None))
    ingest.close(2.0)
    writer.close()
    # Every event observers were shown, every field (a message's decoded payload too).
    shown = orjson.dumps([list(o) for o in seen], default=str)
    assert TOKEN.encode() not in shown and ("9f1c" * 8).encode() not in shown
    assert TOKEN[::-1].encode() not in shown
    assert TOKEN.encode() not in (tmp_path / "c.db").read_bytes()
