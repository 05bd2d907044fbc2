"""The stream-health detector, script-style: raw proxy facts at given times -> expected flags.

Each script is a list of the proxy's raw facts (request, response headers, chunk, end, error,
tick) with the times they happened. The real `Ingest` turns them into the typed events
(recorder.events) the recorder emits live, and `HealthMonitor` turns those into flags. The clock is injected:
nothing sleeps, so every case runs in microseconds. The last tests check that an offline
`ssetap check` over the stored capture reaches the same verdicts as the live run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from recorder.events import Event, StreamClosed, Tick
from recorder.health import (
    FLAG_KINDS,
    HealthConfig,
    HealthConfigError,
    HealthMonitor,
    config_from_mapping,
    parse_duration,
)
from recorder.ingest import Ingest
from recorder.model import Flag
from recorder.redact import Redactor

SERVER = "http://127.0.0.1:8000"
MCP = SERVER + "/mcp"
JSON_CT = ("Content-Type", "application/json")
SSE_CT = ("Content-Type", "text/event-stream")
ACCEPT = ("Accept", "application/json, text/event-stream")
ACCEPT_SSE = ("Accept", "text/event-stream")
CLIENT = "127.0.0.1:50000"

# Short intervals, as in the end-to-end tests; each test changes what it needs.
CFG = HealthConfig(heartbeat_interval=1.0, heartbeat_slack=0.3, request_timeout=5.0,
                   resume_grace=1.0, session_recover_grace=2.0)


class _Sink:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def next_id(self, table: str) -> int:
        self.ids[table] = self.ids.get(table, 0) + 1
        return self.ids[table]

    def insert(self, table: str, row: dict[str, Any]) -> None:
        pass

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        pass

    def record_gap(self, gap: Any) -> None:
        pass


def rpc(id_: Any, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def ok(id_: Any, **result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "result": result}


def err(id_: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message}}


def event(obj: Any = None, *, data: str | None = None, id_: str | None = None,
          retry: int | None = None, name: str | None = None) -> bytes:
    lines = []
    if id_ is not None:
        lines.append(f"id: {id_}")
    if name:
        lines.append(f"event: {name}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    lines.append("data: " + (data if data is not None else orjson.dumps(obj).decode()))
    return ("\n".join(lines) + "\n\n").encode()


PING = b": ping - 2025-06-01 12:00:00\n\n"


class Wire:
    """A script of raw proxy facts, fed through the real Ingest into events.

    Like the recording process, it ticks the clock every `tick` seconds (0.1 s here) while
    time passes between facts, so silences are seen as they happen.
    """

    def __init__(self, tick: float = 0.1) -> None:
        self.events: list[Event] = []
        self.ingest = Ingest(_Sink(), Redactor(None), [self.events.append],
                             update_interval=1e9)
        self.t = 0.0
        self.tick = tick
        self.next_tick = tick

    def _at(self, t: float) -> float:
        while self.next_tick <= t + 1e-9:
            self.ingest.feed(("t", self.next_tick))
            self.next_tick = round(self.next_tick + self.tick, 9)
        self.t = max(self.t, t)
        return t

    def request(self, flow: str, t: float, method: str, url: str, headers: list[tuple[str, str]],
                body: Any = None, client: str = CLIENT) -> None:
        raw = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        self.ingest.feed(("q", flow, self._at(t), method, url, "HTTP/1.1", headers, raw, client))

    def respond(self, flow: str, t: float, status: int, headers: list[tuple[str, str]]) -> None:
        self.ingest.feed(("h", flow, self._at(t), status, "", headers, True))

    def chunk(self, flow: str, t: float, data: bytes | Any) -> None:
        raw = data if isinstance(data, bytes) else orjson.dumps(data)
        self.ingest.feed(("c", flow, self._at(t), raw))

    def end(self, flow: str, t: float) -> None:
        self.ingest.feed(("e", flow, self._at(t), None))

    def fail(self, flow: str, t: float, message: str = "peer closed connection") -> None:
        self.ingest.feed(("x", flow, self._at(t), message))

    def ticks(self, until: float) -> None:
        """Let time pass until `until` (ticking on the way)."""
        self._at(until)

    def flags(self, config: HealthConfig = CFG) -> list[Flag]:
        return HealthMonitor(config).feed(self.events)

    # Streamable HTTP, stateful ------------------------------------------------------------

    def initialize(self, t: float, sid: str = "s" * 32, flow: str = "init",
                   client: str = CLIENT, user_agent: str = "client/1") -> list[tuple[str, str]]:
        ua = ("User-Agent", user_agent)
        self.request(flow, t, "POST", MCP, [JSON_CT, ACCEPT, ua],
                     rpc(0, "initialize", protocolVersion="2025-06-18", capabilities={},
                         clientInfo={"name": "c", "version": "1"}), client)
        self.respond(flow, t + 0.01, 200, [SSE_CT, ("mcp-session-id", sid)])
        self.chunk(flow, t + 0.02, event(ok(0, protocolVersion="2025-06-18", capabilities={},
                                            serverInfo={"name": "s", "version": "1"})))
        self.end(flow, t + 0.02)
        headers = [JSON_CT, ACCEPT, ua, ("mcp-session-id", sid),
                   ("mcp-protocol-version", "2025-06-18")]
        self.request(flow + "-n", t + 0.03, "POST", MCP, headers,
                     note("notifications/initialized"), client)
        self.respond(flow + "-n", t + 0.04, 202, [JSON_CT, ("mcp-session-id", sid)])
        self.end(flow + "-n", t + 0.04)
        return headers

    def post(self, flow: str, t: float, body: Any, headers: list[tuple[str, str]],
             status: int = 200, sse: bool = True, url: str = MCP,
             response_headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.request(flow, t, "POST", url, headers, body)
        sid = [h for h in headers if h[0] == "mcp-session-id"]
        ctype = SSE_CT if sse and status == 200 else JSON_CT
        self.respond(flow, t + 0.01, status, [ctype, *sid, *response_headers])

    def get(self, flow: str, t: float, headers: list[tuple[str, str]], status: int = 200,
            url: str = MCP, client: str = CLIENT,
            response_headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.request(flow, t, "GET", url, [ACCEPT_SSE, *headers], None, client)
        ctype = SSE_CT if status == 200 else JSON_CT
        self.respond(flow, t + 0.01, status, [ctype, *response_headers])
        if status != 200:
            self.end(flow, t + 0.01)

    # Legacy HTTP+SSE ----------------------------------------------------------------------

    def legacy_open(self, flow: str, t: float, session: str, client: str = CLIENT) -> None:
        self.request(flow, t, "GET", SERVER + "/sse", [ACCEPT_SSE, ("User-Agent", "legacy/1")],
                     None, client)
        self.respond(flow, t + 0.01, 200, [SSE_CT])
        self.chunk(flow, t + 0.02, event(data=f"/messages/?session_id={session}",
                                         name="endpoint"))

    def legacy_post(self, flow: str, t: float, session: str, body: Any, status: int = 202,
                    client: str = CLIENT) -> None:
        self.request(flow, t, "POST", f"{SERVER}/messages/?session_id={session}",
                     [JSON_CT, ("User-Agent", "legacy/1")], body, client)
        self.respond(flow, t + 0.005, status, [("Content-Type", "text/plain")])
        self.end(flow, t + 0.005)


def kinds(flags: list[Flag]) -> list[str]:
    return [f.kind for f in flags]


def only(flags: list[Flag], kind: str) -> Flag:
    found = [f for f in flags if f.kind == kind]
    assert len(found) == 1, (kind, [(f.kind, f.message) for f in flags])
    return found[0]


def serious(flags: list[Flag]) -> list[tuple[str, str]]:
    return [(f.kind, f.message) for f in flags if f.severity != "info"]


# --- heartbeat-missing ------------------------------------------------------------------------


def test_silent_stream_is_flagged_while_silent_against_its_learned_cadence() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    for i in range(1, 6):  # heartbeats every 0.2 s, then nothing
        w.chunk("g", 1.0 + 0.2 * i, PING)
    w.ticks(4.0)
    flags = w.flags()
    flag = only(flags, "heartbeat-missing")
    # cadence 0.2 s: silence over max(2.5 x 0.2, 0.2 + 0.3 slack) = 0.5 s is flagged, by a tick
    assert 2.5 <= flag.t <= 2.65
    assert flag.severity == "warning" and flag.stream_id is not None
    assert "heartbeat cadence is 200 ms" in flag.message and "no bytes for" in flag.message
    assert flag.details["cadence"] == pytest.approx(0.2)
    # the stream is still open: the flag came from a tick, not from a close
    assert not any(isinstance(e, StreamClosed) and e.stream_id == flag.stream_id
                   for e in w.events)


def test_stream_that_never_heartbeats_is_at_risk_after_the_fallback_interval() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    w.ticks(5.0)
    flag = only(w.flags(), "heartbeat-missing")
    assert flag.t == pytest.approx(3.6, abs=0.11)  # 2.5 x the 1 s fallback after opening
    assert "no heartbeat, at risk of idle timeouts" in flag.message
    assert "the next common idle timeout is 15.0 s" in flag.message


def test_steady_heartbeats_and_short_post_streams_are_never_flagged() -> None:
    w = Wire()
    cfg = dataclasses.replace(CFG, heartbeat_interval=15.0)
    headers = w.initialize(0.0)
    w.get("g", 0.1, headers)
    t = 0.1
    for i in range(12):  # 15 s heartbeats for three minutes, with some jitter
        t += 15.0 + (0.4 if i % 3 == 0 else -0.2)
        w.ticks(t)
        w.chunk("g", t, PING)
        w.post(f"p{i}", t + 1, rpc(i + 1, "tools/list"), headers)
        w.chunk(f"p{i}", t + 1.02, event(ok(i + 1, tools=[])))
        w.end(f"p{i}", t + 1.02)
    w.ticks(t + 20)
    assert w.flags(cfg) == []


def test_heartbeat_missing_fires_once_however_long_the_silence() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    w.chunk("g", 1.2, PING)
    w.ticks(60.0)
    w.chunk("g", 61.0, PING)  # it comes back; the flag is not raised again
    w.ticks(70.0)
    assert kinds(w.flags()) == ["heartbeat-missing"]


# --- idle-timeout-close -----------------------------------------------------------------------


def test_close_after_a_round_idle_time_is_flagged() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    w.chunk("g", 2.0, event(note("notifications/tools/list_changed")))
    w.fail("g", 62.05)  # 60.05 s of silence: nginx proxy_read_timeout
    flag = only(w.flags(dataclasses.replace(CFG, heartbeat_interval=0)), "idle-timeout-close")
    assert "after 60.0 s of silence" in flag.message and "nginx" in flag.message
    assert flag.details["constant"] == 60.0


def test_client_side_idle_timeout_shows_when_the_client_reconnects() -> None:
    cfg = dataclasses.replace(CFG, heartbeat_interval=0)
    for reconnects in (True, False):
        w = Wire()
        headers = w.initialize(0.0)
        w.get("g", 1.0, headers)  # a server that never heartbeats
        w.fail("g", 301.0, "Client disconnected.")  # undici's 300 s body timeout
        if reconnects:
            w.get("g2", 302.0, headers)
        flags = [f for f in w.flags(cfg) if f.kind == "idle-timeout-close"]
        if reconnects:
            assert len(flags) == 1 and flags[0].t == 301.0
            assert "closed by the client after 300.0 s of silence" in flags[0].message
            assert "the client reconnected 1.00 s later" in flags[0].message
        else:  # the client just ended its session then: nothing to say
            assert flags == []


def test_close_at_a_round_age_is_flagged_even_with_heartbeats() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    t = 1.0
    while t < 300:
        t += 15.0
        w.chunk("g", t, PING)
    w.fail("g", 301.1)  # cut by an absolute 300 s limit (Node requestTimeout, undici)
    flag = only(w.flags(dataclasses.replace(CFG, heartbeat_interval=15)), "idle-timeout-close")
    assert "closed with an error 300.1 s after it opened" in flag.message
    assert "undici" in flag.message


def test_a_stream_the_server_ended_cleanly_is_not_cut_whatever_its_duration() -> None:
    # Issue 14: 30,000 complete events, then the server ends the stream normally at 15 s;
    # this was called "idle-timeout-close ... Envoy's route timeout".
    w = Wire(tick=1.0)
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    for i in range(3000):  # a tenth of the events keeps the test fast; the rule is the same
        w.chunk("g", 1.02 + i * 0.005, event(note("notifications/message", data=i)))
    w.end("g", 16.0)
    cfg = dataclasses.replace(CFG, heartbeat_interval=0)
    assert "idle-timeout-close" not in kinds(w.flags(cfg))
    # Cut mid-event at the same age, it is a deadline; and so is a clean end after 15 s idle.
    w2 = Wire(tick=1.0)
    headers = w2.initialize(0.0)
    w2.get("g", 1.0, headers)
    w2.chunk("g", 1.5, event(note("notifications/message", data=1)))
    w2.chunk("g", 15.0, b'data: {"jsonrpc":"2.0","method":"notifications/mes')
    w2.end("g", 16.0)
    flag = only(w2.flags(cfg), "idle-timeout-close")
    assert "15.0 s after it opened" in flag.message and "Envoy" in flag.message
    w3 = Wire(tick=1.0)
    headers = w3.initialize(0.0)
    w3.get("g", 1.0, headers)
    w3.chunk("g", 1.0, event(note("notifications/message", data=1)))
    w3.end("g", 16.0)
    flag = only(w3.flags(cfg), "idle-timeout-close")
    assert "after 15.0 s of silence" in flag.message


def test_polling_close_after_retry_at_a_round_age_is_deliberate() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(1, "tools/call", name="long"), headers)
    w.chunk("p", 1.01, event(data="", id_="e1", retry=1000))  # priming with retry
    w.end("p", 31.0)  # SEP-1699: the server drops the connection, the client resumes
    w.get("r", 32.0, [*headers, ("Last-Event-ID", "e1")])
    w.chunk("r", 90.0, event(ok(1, content=[]), id_="e2"))  # the tool ran another minute
    cfg = dataclasses.replace(CFG, heartbeat_interval=0, request_timeout=0)
    assert serious(w.flags(cfg)) == []


def test_normal_closes_at_round_times_are_not_flagged() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    # A 30 s tool: its POST stream closes right after the response, 30 s after opening.
    w.post("slow", 1.0, rpc(1, "tools/call", name="slow"), headers)
    w.chunk("slow", 31.0, event(ok(1, content=[])))
    w.end("slow", 31.0)
    # The client closes its own heartbeating GET exactly 60 s after opening it.
    w.get("g", 40.0, headers)
    for i in range(1, 5):
        w.chunk("g", 40.0 + 15 * i - 0.5, PING)
    w.fail("g", 100.0, "Client disconnected.")
    # The recorder stopping is not the network either.
    w.get("g2", 100.0, headers, url=MCP + "?x=1")
    w.ingest.close(400.0)
    cfg = dataclasses.replace(CFG, heartbeat_interval=0, request_timeout=0)
    assert "idle-timeout-close" not in kinds(w.flags(cfg))


def test_server_closing_the_get_as_the_client_deletes_the_session_is_normal() -> None:
    cfg = dataclasses.replace(CFG, idle_timeouts=(1.0,), idle_tolerance=0.15)
    for delete in (True, False):
        w = Wire()
        headers = w.initialize(0.0)
        w.get("g", 0.1, headers)
        w.chunk("g", 0.3, PING)
        if delete:  # the SDK server ends the GET while it handles the DELETE
            w.request("d", 1.1, "DELETE", MCP, headers)
            w.end("g", 1.105)
        else:  # cut at a round age (a clean end would be explained by itself)
            w.fail("g", 1.105)
        if delete:
            w.respond("d", 1.11, 200, [])
            w.end("d", 1.11)
        assert ("idle-timeout-close" in kinds(w.flags(cfg))) is not delete


def test_a_close_value_that_recurs_is_a_deadline() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    for i in range(3):  # three GET streams, each cut after 47.0 s of silence
        start = 10.0 + 100 * i
        w.get(f"g{i}", start, headers)
        w.chunk(f"g{i}", start + 1, PING)
        w.fail(f"g{i}", start + 48.0 + 0.02 * i)
    flags = [f for f in w.flags(dataclasses.replace(CFG, heartbeat_interval=0))
             if f.kind == "idle-timeout-close"]
    assert len(flags) == 3  # all three, once the third shows the value recurs
    assert all("3 streams in this capture closed at 47." in f.message for f in flags)


# --- buffered-stream --------------------------------------------------------------------------


def test_progress_held_back_and_released_in_one_burst() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    body = rpc(1, "tools/call", name="countdown", _meta={"progressToken": 1})
    w.post("p", 1.0, body, headers)
    burst = b"".join(event(note("notifications/progress", progressToken=1, progress=i, total=5))
                     for i in range(1, 6)) + event(ok(1, content=[]))
    w.chunk("p", 4.0, burst)  # 3 s of nothing, then everything at once
    w.end("p", 4.0)
    flag = only(w.flags(dataclasses.replace(CFG, heartbeat_interval=0)), "buffered-stream")
    assert "6 SSE events arrived together" in flag.message
    assert "5 progress steps among them" in flag.message
    assert flag.t == 4.0


def test_fast_tool_answering_after_its_own_silence_is_not_a_burst() -> None:
    w = Wire()
    w.legacy_open("g", 0.0, "a" * 32)
    w.legacy_post("i", 0.1, "a" * 32, rpc(0, "initialize"))
    w.chunk("g", 0.12, event(ok(0, protocolVersion="2024-11-05"), name="message"))
    # Quiet for 5 s, then a request whose log lines and result come back together.
    w.legacy_post("c", 5.0, "a" * 32, rpc(1, "tools/call", name="fast"))
    w.chunk("g", 5.01, b"".join(event(note("notifications/message", level="info", data=i),
                                      name="message") for i in range(5))
            + event(ok(1, content=[]), name="message"))
    w.ticks(6.0)
    assert "buffered-stream" not in kinds(w.flags(dataclasses.replace(CFG, heartbeat_interval=0)))


def test_a_stream_shed_under_overload_is_not_a_silence_nor_a_burst_after_one() -> None:
    w = Wire()
    w.legacy_open("g", 0.0, "a" * 32)
    for i in range(20):  # a stream at full speed: an event every millisecond
        w.chunk("g", 0.1 + i / 1000, event(note("notifications/message", data=i), name="message"))
    # The recorder shed 3 s of it (the proxy forwarded every byte), then recorded again.
    w.ingest.feed(("g", "g", 0.12, 3.12, 900_000, 3000, 3000, "overload", None, b"\n\n"))
    for i in range(20):
        w.chunk("g", 3.121 + i / 1000, event(note("notifications/message", data=i),
                                             name="message"))
    w.ticks(5.0)
    found = kinds(w.flags(dataclasses.replace(CFG, heartbeat_interval=2.0)))
    assert "buffered-stream" not in found and "heartbeat-missing" not in found


def test_static_buffering_hints() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers, response_headers=[("Content-Encoding", "gzip")])
    w.post("p", 2.0, rpc(1, "tools/list"), headers, response_headers=[("Server", "nginx/1.25")])
    w.chunk("p", 2.1, event(ok(1, tools=[])))
    w.end("p", 2.1)
    w.post("q", 3.0, rpc(2, "tools/list"), headers,
           response_headers=[("Via", "1.1 nginx"), ("X-Accel-Buffering", "no")])
    w.chunk("q", 3.1, event(ok(2, tools=[])))
    w.end("q", 3.1)
    flags = [f for f in w.flags(dataclasses.replace(CFG, heartbeat_interval=0))
             if f.kind == "buffered-stream"]
    assert len(flags) == 2
    assert "Content-Encoding: gzip" in flags[0].message
    assert "nginx" in flags[1].message and "X-Accel-Buffering" in flags[1].message


# --- stream-truncated -------------------------------------------------------------------------


def test_stream_that_ends_mid_event() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    w.chunk("g", 1.1, b'event: message\ndata: {"jsonrpc":"2.0","method":"notif')
    w.fail("g", 1.2)
    flag = only(w.flags(), "stream-truncated")
    assert "ended mid-event" in flag.message


def test_post_stream_that_ends_before_its_response() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(7, "tools/call", name="work"), headers)
    w.chunk("p", 1.5, event(note("notifications/message", level="info", data="started")))
    w.fail("p", 2.0)
    flags = w.flags()
    flag = only(flags, "stream-truncated")
    assert "before the response to tools/call work (id 7)" in flag.message
    assert "issued no event ids" in flag.message
    assert flag.t == 2.0 and flag.call_id is not None


def test_resumable_post_stream_answered_on_the_resume_is_fine() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(7, "tools/call", name="work"), headers)
    w.chunk("p", 1.01, event(data="", id_="e1", retry=100))  # priming, then a server close
    w.end("p", 1.02)
    w.get("r", 1.2, [*headers, ("Last-Event-ID", "e1")])
    w.chunk("r", 1.5, event(ok(7, content=[]), id_="e2"))
    w.ticks(4.0)
    assert serious(w.flags(dataclasses.replace(CFG, heartbeat_interval=0))) == []


def test_resumable_post_stream_never_resumed_is_flagged_after_the_grace() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(7, "tools/call", name="work"), headers)
    w.chunk("p", 1.01, event(data="", id_="e1", retry=100))
    w.fail("p", 1.02)
    w.ticks(4.0)
    flag = only(w.flags(dataclasses.replace(CFG, request_timeout=0)), "stream-truncated")
    assert "no resumption delivered it" in flag.message
    assert flag.t == pytest.approx(1.02)  # dated at the close, raised once the grace ran out


def test_client_and_recorder_closes_do_not_truncate() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(7, "tools/call", name="work"), headers)
    w.chunk("p", 1.1, b"data: {\"half")
    w.fail("p", 1.2, "Client disconnected.")
    w.post("q", 2.0, rpc(8, "tools/call", name="work"), headers)
    w.ingest.close(2.5)
    assert "stream-truncated" not in kinds(w.flags(dataclasses.replace(CFG, request_timeout=0)))


# --- reconnect-storm --------------------------------------------------------------------------


def test_get_reopened_in_a_loop_without_backoff() -> None:
    w = Wire()
    for i in range(12):  # 405 every 0.1 s, as a client that ignores "not supported"
        w.get(f"g{i}", 1.0 + 0.1 * i, [], status=405)
    flags = w.flags()
    flag = only(flags, "reconnect-storm")
    assert "no backoff" in flag.message and flag.severity == "error"


def test_window_rule_counts_reconnects_even_with_some_backoff() -> None:
    w = Wire()
    t = 0.0
    for i in range(12):
        t += 0.5 + (0.3 if i % 2 else 0.0)
        w.get(f"g{i}", t, [], status=404)
    flag = only(w.flags(dataclasses.replace(CFG, storm_no_backoff=50)), "reconnect-storm")
    assert "10 times in" in flag.message


def test_sdk_clients_retrying_a_few_times_with_backoff_are_fine() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g0", 1.0, headers, status=405)  # TypeScript: stops at 405
    w.get("h0", 2.0, headers, status=405)  # Python v1: two retries, 1 s apart
    w.get("h1", 3.0, headers, status=405)
    w.get("h2", 4.0, headers, status=405)
    t = 5.0
    delay = 1.0
    for i in range(6):  # exponential backoff (1 s x 1.5)
        w.get(f"b{i}", t, [], status=503)
        t += delay
        delay *= 1.5
    assert "reconnect-storm" not in kinds(w.flags())


def test_many_short_sessions_of_one_client_are_not_a_storm() -> None:
    w = Wire()
    for i in range(15):  # a test suite: 15 sessions in 15 s, each GET ended by its DELETE
        t = float(i)
        headers = w.initialize(t, sid=f"{i:032d}", flow=f"i{i}")
        w.get(f"g{i}", t + 0.1, headers)
        w.request(f"d{i}", t + 0.5, "DELETE", MCP, headers)
        w.end(f"g{i}", t + 0.505)
        w.respond(f"d{i}", t + 0.51, 200, [])
        w.end(f"d{i}", t + 0.51)
    assert serious(w.flags(dataclasses.replace(CFG, heartbeat_interval=0))) == []


def test_legacy_client_reconnecting_into_new_sessions_is_a_storm() -> None:
    # Issue 14: GET /sse reopened 30 times in 3 s; each reconnect is a new endpoint session,
    # so a per-session view saw 30 healthy one-stream sessions.
    w = Wire()
    for i in range(30):
        t = 0.1 * i
        w.legacy_open(f"g{i}", t, f"{i:032x}")
        w.fail(f"g{i}", t + 0.05, "Client disconnected.")
    w.ticks(4.0)
    flags = [f for f in w.flags(dataclasses.replace(CFG, heartbeat_interval=0))
             if f.severity != "info"]
    assert {f.kind for f in flags} == {"reconnect-storm"}
    storm = flags[0]
    assert "GET /sse" in storm.message and "across sessions #1, #2, #3" in storm.message
    assert len(storm.details["sessions"]) >= 5


def test_legacy_sessions_that_did_their_work_are_not_a_storm() -> None:
    w = Wire()
    for i in range(15):  # a test suite: 15 legacy sessions, each initializes and calls a tool
        t = float(i)
        sid = f"{i:032x}"
        w.legacy_open(f"g{i}", t, sid)
        w.legacy_post(f"i{i}", t + 0.1, sid, rpc(0, "initialize", protocolVersion="2024-11-05",
                                                 capabilities={},
                                                 clientInfo={"name": "c", "version": "1"}))
        w.chunk(f"g{i}", t + 0.12, event(ok(0, protocolVersion="2024-11-05", capabilities={},
                                            serverInfo={"name": "s", "version": "1"}),
                                         name="message"))
        w.legacy_post(f"n{i}", t + 0.13, sid, note("notifications/initialized"))
        w.legacy_post(f"c{i}", t + 0.2, sid, rpc(1, "tools/call", name="echo"))
        w.chunk(f"g{i}", t + 0.22, event(ok(1, content=[]), name="message"))
        w.fail(f"g{i}", t + 0.3, "Client disconnected.")
    assert serious(w.flags(dataclasses.replace(CFG, heartbeat_interval=0))) == []


def test_streamable_client_re_initializing_in_a_loop_is_a_storm() -> None:
    w = Wire()
    for i in range(12):  # initialize, nothing else, initialize again: a new session each time
        w.initialize(0.2 * i, sid=f"{i:032d}", flow=f"i{i}")
    w.ticks(3.0)
    storm = only(w.flags(), "reconnect-storm")
    assert "initialized 11 new sessions" in storm.message
    assert storm.details["sessions"][:3] == [1, 2, 3]
    assert "sessions #1, #2, #3, ..." in storm.message


def test_short_working_sessions_or_deleted_ones_are_no_re_initialize_loop() -> None:
    w = Wire()
    for i in range(15):
        headers = w.initialize(0.5 * i, sid=f"{i:032d}", flow=f"i{i}")
        if i % 2:
            w.post(f"c{i}", 0.5 * i + 0.1, rpc(1, "tools/list"), headers, sse=False)
            w.chunk(f"c{i}", 0.5 * i + 0.12, ok(1, tools=[]))
            w.end(f"c{i}", 0.5 * i + 0.12)
        else:
            w.request(f"d{i}", 0.5 * i + 0.1, "DELETE", MCP, headers)
            w.respond(f"d{i}", 0.5 * i + 0.11, 200, [])
            w.end(f"d{i}", 0.5 * i + 0.11)
    assert "reconnect-storm" not in kinds(w.flags())


def test_429_with_retry_after_and_a_client_that_does_not_wait() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("a", 1.0, rpc(1, "tools/list"), headers, status=429, sse=False,
           response_headers=[("Retry-After", "2")])
    w.end("a", 1.01)
    flags = w.flags()
    limited = only(flags, "rate-limited")
    assert limited.severity == "warning" and limited.details["retry_after"] == 2.0
    assert "429 Too Many Requests with Retry-After: 2" in limited.message
    assert "reconnect-storm" not in kinds(flags)
    for i in range(2):  # back after 0.2 s and 0.4 s, not 2 s
        w.post(f"b{i}", 1.2 + 0.2 * i, rpc(2 + i, "tools/list"), headers, status=429,
               sse=False, response_headers=[("Retry-After", "2")])
        w.end(f"b{i}", 1.21 + 0.2 * i)
    storm = only(w.flags(), "reconnect-storm")
    assert "before the Retry-After of 2.00 s" in storm.message


def test_a_client_that_waits_for_retry_after_is_fine_and_503_without_it_is_noted() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("a", 1.0, rpc(1, "tools/list"), headers, status=503, sse=False,
           response_headers=[("Retry-After", "Tue, 01 Dec 2026 10:00:02 GMT"),
                             ("Date", "Tue, 01 Dec 2026 10:00:00 GMT")])
    w.end("a", 1.01)
    w.post("b", 3.05, rpc(2, "tools/list"), headers, status=503, sse=False)
    w.end("b", 3.06)
    w.post("c", 3.1, rpc(3, "tools/list"), headers, status=503, sse=False)
    w.end("c", 3.11)
    flags = w.flags()
    assert kinds(flags).count("rate-limited") == 1  # once per client and endpoint
    assert only(flags, "rate-limited").details["retry_after"] == 2.0
    assert "reconnect-storm" not in kinds(flags)


def test_reconnects_that_ignore_retry() -> None:
    w = Wire()
    for i in range(3):
        w.get(f"g{i}", 1.0 + i, [])
        w.chunk(f"g{i}", 1.0 + i + 0.02, b"retry: 5000\n\n")
        w.end(f"g{i}", 1.0 + i + 0.05)  # server ends it and asks for 5 s
    flag = only(w.flags(), "reconnect-storm")
    assert "retry: 5000 ms" in flag.message


def test_polling_that_respects_retry_is_not_a_storm() -> None:
    w = Wire()
    t = 1.0
    for i in range(20):
        w.get(f"g{i}", t, [])
        w.chunk(f"g{i}", t + 0.02, b"retry: 500\n\n")
        w.end(f"g{i}", t + 0.3)
        t += 0.3 + 0.55
    assert "reconnect-storm" not in kinds(w.flags())


# --- resume-gap -------------------------------------------------------------------------------


def test_reconnect_without_last_event_id_after_ids_were_issued() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    w.chunk("g", 1.1, event(note("notifications/message", level="info", data=1), id_="7"))
    w.end("g", 1.5)
    w.get("g2", 1.6, headers)  # no Last-Event-ID
    flag = only(w.flags(), "resume-gap")
    assert "without Last-Event-ID" in flag.message and "'7'" in flag.message


def test_resume_that_replays_another_streams_events() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    w.chunk("g", 1.1, event(note("notifications/message", data=1), id_="g-1"))
    w.post("p", 1.2, rpc(1, "tools/call", name="x"), headers)
    w.chunk("p", 1.3, event(note("notifications/message", data=2), id_="p-1"))
    w.chunk("p", 1.4, event(ok(1, content=[]), id_="p-2"))
    w.end("p", 1.4)
    w.fail("g", 2.0)
    w.get("r", 2.1, [*headers, ("Last-Event-ID", "g-1")])
    w.chunk("r", 2.2, event(note("notifications/message", data=2), id_="p-1"))
    flag = only(w.flags(), "resume-gap")
    assert "already gone out on another stream" in flag.message


def test_resume_with_a_gap_and_one_replaying_before_the_cursor() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    for i in range(1, 5):
        w.chunk("g", 1.0 + 0.1 * i, event(note("notifications/message", data=i), id_=str(i)))
    w.fail("g", 2.0)
    w.get("r", 2.1, [*headers, ("Last-Event-ID", "4")])
    w.chunk("r", 2.2, event(note("notifications/message", data=8), id_="8"))  # 5..7 lost
    w.fail("r", 2.5)
    w.get("r2", 2.6, [*headers, ("Last-Event-ID", "8")])
    w.chunk("r2", 2.7, event(note("notifications/message", data=3), id_="3"))  # replayed
    messages = [f.message for f in w.flags() if f.kind == "resume-gap"]
    assert len(messages) == 2
    assert "a gap of 3 events" in messages[0]
    assert "replayed '3', delivered before that cursor" in messages[1]


def test_a_proper_resume_is_clean() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    for i in range(1, 4):
        w.chunk("g", 1.0 + 0.1 * i, event(note("notifications/message", data=i), id_=str(i)))
    w.fail("g", 2.0)
    w.get("r", 2.1, [*headers, ("Last-Event-ID", "3")])
    w.chunk("r", 2.2, event(note("notifications/message", data=4), id_="4"))
    assert "resume-gap" not in kinds(w.flags())


# --- request-timeout, late-response -----------------------------------------------------------


def test_hung_call_is_flagged_at_its_deadline_while_pending() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="hang"), headers)
    w.chunk("p", 1.05, PING)
    for i in range(1, 40):
        w.chunk("p", 1.05 + 0.2 * i, PING)  # the stream is alive; the tool is not answering
    w.ticks(9.0)
    flag = only(w.flags(), "request-timeout")
    assert flag.severity == "error" and 6.0 <= flag.t <= 6.11
    assert "tools/call hang (id 3) got no response, progress or cancellation within 5.00 s" \
        in flag.message
    assert flag.details["state"] == "pending"


def test_per_method_deadlines_and_methods_without_one() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="hang"), headers)
    w.post("e", 1.0, rpc(4, "resources/read", uri="x://y"), headers)
    w.ticks(30.0)
    cfg = config_from_mapping({"method_timeouts": {"tools/call": "20s", "resources/read": 0}},
                              dataclasses.replace(CFG, heartbeat_interval=0))
    flag = only(w.flags(cfg), "request-timeout")
    assert flag.t == pytest.approx(21.0, abs=0.11)


def test_client_cancel_past_the_deadline_is_a_timeout() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="hang"), headers)
    w.post("c", 7.0, note("notifications/cancelled", requestId=3, reason="Request timed out"),
           headers, status=202, sse=False)
    w.end("c", 7.01)
    w.ticks(10.0)
    flags = w.flags(dataclasses.replace(CFG, tick_interval=10))
    timeout = only(flags, "request-timeout")
    assert timeout.severity == "error" and "request-cancelled" not in kinds(flags)


def test_client_cancel_before_the_deadline_then_late_answer() -> None:
    # Issue 14: fastmcp's call_tool(timeout=0.5) sends notifications/cancelled with
    # "Request timed out"; that is the client's own deadline, not ours: information.
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="hang"), headers)
    w.ticks(1.5)
    w.post("c", 1.511, note("notifications/cancelled", requestId=3, reason="Request timed out"),
           headers, status=202, sse=False)
    w.end("c", 1.52)
    w.chunk("p", 1.56, event(err(3, 0, "Request cancelled")))
    w.end("p", 1.56)
    w.ticks(10.0)
    flags = w.flags()
    assert "request-timeout" not in kinds(flags)
    cancelled = only(flags, "request-cancelled")
    assert cancelled.severity == "info" and cancelled.t == 1.511
    assert "cancelled by its client after 511 ms with reason 'Request timed out'" \
        in cancelled.message
    assert "an error still came 49 ms after the cancel" in cancelled.message
    assert cancelled.details["answered"] is True
    assert cancelled.details["reason"] == "Request timed out"
    late = only(flags, "late-response")
    assert "an error for tools/call hang (id 3) arrived 49 ms after the client cancelled" \
        in late.message
    assert late.severity == "warning"


def test_a_user_cancel_before_the_deadline_is_not_a_timeout() -> None:
    # The TypeScript SDK's AbortController cancel: a reason, no answer (the server obeys).
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="hang"), headers)
    w.post("c", 2.0, note("notifications/cancelled", requestId=3,
                          reason="AbortError: This operation was aborted"),
           headers, status=202, sse=False)
    w.fail("p", 2.01, "Client disconnected.")
    w.ticks(10.0)
    flags = w.flags()
    assert "request-timeout" not in kinds(flags)
    cancelled = only(flags, "request-cancelled")
    assert cancelled.details["answered"] is False
    assert "no answer came within 2.00 s" in cancelled.message
    assert "'AbortError: This operation was aborted'" in cancelled.message


def test_2026_client_closing_its_response_stream_is_a_cancel() -> None:
    # 2026-07-28: "closing the response stream counts as cancellation" (no notification).
    w = Wire()
    headers = [JSON_CT, ACCEPT, ("mcp-protocol-version", "2026-07-28"),
               ("mcp-method", "tools/call"), ("mcp-name", "hang")]
    w.request("p", 1.0, "POST", MCP, headers, rpc(2, "tools/call", name="hang"))
    w.fail("p", 1.5, "Client disconnected.")
    w.ticks(10.0)
    flags = w.flags()
    cancelled = only(flags, "request-cancelled")
    assert "with reason 'the client closed the response stream'" in cancelled.message
    assert "request-timeout" not in kinds(flags)
    # Before 2026-07-28 a disconnect is not a cancellation: the call stays pending.
    w = Wire()
    w.request("p", 1.0, "POST", MCP, [JSON_CT, ACCEPT], rpc(2, "tools/call", name="hang"))
    w.fail("p", 1.5, "Client disconnected.")
    w.ticks(10.0)
    assert "request-cancelled" not in kinds(w.flags())


def test_a_cancel_just_before_the_input_ends_is_still_reported() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="hang"), headers)
    w.post("c", 1.5, note("notifications/cancelled", requestId=3), headers, status=202,
           sse=False)
    monitor = HealthMonitor(CFG)
    flags = monitor.feed(w.events) + monitor.finish(1.6)
    assert "(no reason)" in only(flags, "request-cancelled").message


def test_call_whose_stream_closed_first() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="work"), headers)
    w.fail("p", 1.5)
    w.ticks(7.0)
    flag = only(w.flags(), "request-timeout")
    assert "POST /mcp (stream #" in flag.message and "closed with an error" in flag.message
    assert flag.details["state"] == "stream-closed"


def test_slow_call_with_progress_is_slow_not_hung() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(3, "tools/call", name="big", _meta={"progressToken": "tok"}), headers)
    for i in range(1, 30):
        w.chunk("p", 1.0 + 0.25 * i,
                event(note("notifications/progress", progressToken="tok", progress=i)))
    w.ticks(8.0)
    flag = only(w.flags(), "request-timeout")
    assert flag.severity == "warning" and "slow, not hung" in flag.message
    assert "received 19 progress notifications" in flag.message


def test_rejected_post_before_a_legacy_fallback_is_not_pending() -> None:
    w = Wire()
    # TypeScript client: POST initialize to the legacy URL, 405, then the legacy GET.
    w.post("p", 1.0, rpc(0, "initialize", protocolVersion="2025-03-26"), [JSON_CT, ACCEPT],
           status=405, url=SERVER + "/sse")
    w.end("p", 1.01)
    w.legacy_open("g", 1.1, "b" * 32)
    w.legacy_post("i", 1.2, "b" * 32, rpc(0, "initialize"))
    w.chunk("g", 1.21, event(ok(0, protocolVersion="2024-11-05"), name="message"))
    w.ticks(20.0)
    assert serious(w.flags(dataclasses.replace(CFG, heartbeat_interval=0))) == []


# --- orphan-response, duplicate-id, error-response --------------------------------------------


def test_orphan_and_duplicate_delivery() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(1, "tools/list"), headers)
    w.chunk("p", 1.1, event(ok(99, tools=[])))  # nobody asked for 99
    w.chunk("p", 1.2, event(ok(1, tools=[])))
    w.end("p", 1.2)
    w.get("g", 2.0, headers)
    w.chunk("g", 2.1, event(ok(1, tools=[])))  # delivered a second time
    flags = [f for f in w.flags() if f.kind == "orphan-response"]
    assert len(flags) == 2
    assert "id 99 matches no request" in flags[0].message
    assert "a second response to c2s request 1" in flags[1].message


def test_transport_errors_without_an_id_are_not_orphans() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(1, "tools/list"), headers, status=400, sse=False)
    w.chunk("p", 1.01, {"jsonrpc": "2.0", "id": "server-error",
                        "error": {"code": -32600, "message": "Bad Request"}})
    w.end("p", 1.01)
    flags = w.flags()
    assert "orphan-response" not in kinds(flags)
    assert "the HTTP 400 answer to POST /mcp carried JSON-RPC error -32600" \
        in only(flags, "error-response").message


def test_duplicate_id_in_flight_is_an_error_after_completion_a_warning() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("a", 1.0, rpc(5, "tools/call", name="slow"), headers)
    w.post("b", 1.1, rpc(5, "tools/call", name="echo"), headers)  # while the first runs
    w.chunk("b", 1.2, event(ok(5, content=[])))
    w.end("b", 1.2)
    w.post("c", 2.0, rpc(1, "tools/list"), headers)
    w.chunk("c", 2.1, event(ok(1, tools=[])))
    w.end("c", 2.1)
    w.post("d", 3.0, rpc(1, "tools/list"), headers)  # reused after completion
    flags = [f for f in w.flags(dataclasses.replace(CFG, request_timeout=0))
             if f.kind == "duplicate-id"]
    assert [(f.severity, f.details["in_flight"]) for f in flags] == [
        ("error", True), ("warning", False)]
    assert "still in flight" in flags[0].message


def test_error_response_carries_code_and_message() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(4, "completion/complete"), headers)
    w.chunk("p", 1.012, event(err(4, -32601, "Method not found")))
    w.end("p", 1.012)
    flag = only(w.flags(), "error-response")
    assert flag.severity == "info"
    assert flag.message == ("completion/complete (id 4) failed after 12 ms with JSON-RPC error "
                            "-32601 'Method not found'")


# --- session-not-found, reinit-missing --------------------------------------------------------


def test_session_that_worked_then_404() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(1, "tools/list"), headers)
    w.chunk("p", 1.1, event(ok(1, tools=[])))
    w.end("p", 1.1)
    w.post("q", 5.0, rpc(2, "tools/list"), headers, status=404, sse=False)
    w.chunk("q", 5.01, {"jsonrpc": "2.0", "id": "server-error",
                        "error": {"code": -32600, "message": "Session not found"}})
    w.end("q", 5.01)
    flag = only(w.flags(), "session-not-found")
    assert flag.severity == "error" and flag.t == 5.01
    assert "which had 2 successful answers (the last 4.00 s earlier)" in flag.message
    assert "sticky sessions" in flag.message


def test_new_client_with_a_stale_session_that_re_initializes_is_fine() -> None:
    w = Wire()
    stale = [JSON_CT, ACCEPT, ("User-Agent", "client/1"), ("mcp-session-id", "z" * 32)]
    w.post("q", 1.0, rpc(1, "tools/list"), stale, status=404, sse=False)
    w.end("q", 1.01)
    w.initialize(1.1)  # the client starts over, as the spec asks
    w.ticks(10.0)
    assert "session-not-found" not in kinds(w.flags())


def test_client_that_never_re_initializes() -> None:
    w = Wire()
    stale = [JSON_CT, ACCEPT, ("User-Agent", "client/1"), ("mcp-session-id", "z" * 32)]
    w.post("q", 1.0, rpc(1, "tools/list"), stale, status=404, sse=False)
    w.end("q", 1.01)
    w.ticks(5.0)
    flag = only(w.flags(), "session-not-found")
    assert "did not re-initialize" in flag.message
    assert flag.t == pytest.approx(3.01, abs=0.11)  # after the 2 s recovery grace


def test_404_after_delete_and_400_without_session_words_are_not_lost_sessions() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.request("d", 1.0, "DELETE", MCP, headers)
    w.respond("d", 1.01, 200, [])
    w.end("d", 1.01)
    w.post("q", 2.0, rpc(1, "tools/list"), headers, status=404, sse=False)
    w.end("q", 2.01)
    w2 = Wire()
    headers = w2.initialize(0.0, sid="t" * 32)
    w2.post("q", 1.0, rpc(1, "tools/list"), headers, status=400, sse=False)
    w2.chunk("q", 1.01, {"jsonrpc": "2.0", "id": None,
                         "error": {"code": -32602, "message": "Invalid params"}})
    w2.end("q", 1.01)
    w2.ticks(5.0)
    assert "session-not-found" not in kinds(w.flags()) + kinds(w2.flags())


def test_400_that_names_the_session_counts() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("q", 1.0, rpc(1, "tools/list"), headers, status=400, sse=False)
    w.chunk("q", 1.01, {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32000, "message": "Bad Request: No valid session ID provided"}})
    w.end("q", 1.01)
    assert only(w.flags(), "session-not-found").details["status"] == 400


def test_legacy_client_that_switched_endpoint_without_initialize() -> None:
    w = Wire()
    w.legacy_open("g1", 0.0, "a" * 32)
    w.legacy_post("i", 0.1, "a" * 32, rpc(0, "initialize"))
    w.chunk("g1", 0.11, event(ok(0, protocolVersion="2024-11-05"), name="message"))
    w.fail("g1", 1.0)
    w.legacy_open("g2", 1.5, "b" * 32)  # EventSource reconnects: a new endpoint
    w.legacy_post("t", 1.6, "b" * 32, rpc(1, "tools/list"))
    flag = only(w.flags(dataclasses.replace(CFG, heartbeat_interval=0)), "reinit-missing")
    assert "received tools/list without any initialize" in flag.message
    assert "after this client's session #1" in flag.message


def test_legacy_reconnect_with_initialize_is_fine() -> None:
    w = Wire()
    for n, sid in enumerate(("a" * 32, "b" * 32)):
        w.legacy_open(f"g{n}", n * 2.0, sid)
        w.legacy_post(f"i{n}", n * 2.0 + 0.1, sid, rpc(0, "initialize"))
        w.chunk(f"g{n}", n * 2.0 + 0.11, event(ok(0, protocolVersion="2024-11-05"),
                                                 name="message"))
        w.legacy_post(f"t{n}", n * 2.0 + 0.2, sid, rpc(1, "tools/list"))
        w.chunk(f"g{n}", n * 2.0 + 0.21, event(ok(1, tools=[]), name="message"))
        w.fail(f"g{n}", n * 2.0 + 1.0, "Client disconnected.")
    assert serious(w.flags(dataclasses.replace(CFG, heartbeat_interval=0))) == []


# --- cross-session-delivery -------------------------------------------------------------------


def _broadcast_pair(w: Wire) -> None:
    """Two legacy clients on a server that writes every message to every open /sse stream."""
    a, b = "a" * 32, "b" * 32
    w.legacy_open("ga", 0.0, a)
    w.legacy_open("gb", 0.05, b)
    init = rpc(0, "initialize", protocolVersion="2024-11-05", capabilities={},
               clientInfo={"name": "c", "version": "1"})
    answer = event(ok(0, protocolVersion="2024-11-05", capabilities={},
                      serverInfo={"name": "s", "version": "1"}), name="message")
    w.legacy_post("ia", 0.1, a, init)
    w.chunk("ga", 0.11, answer)
    w.chunk("gb", 0.11, answer)  # B's copy of A's answer: B has no request 0 yet
    w.legacy_post("ib", 0.3, b, init)
    w.chunk("ga", 0.31, answer)  # A's copy of B's answer: A's request 0 is answered
    w.chunk("gb", 0.31, answer)
    w.legacy_post("ta", 0.5, a, rpc(1, "tools/call", name="secret-a",
                                    _meta={"progressToken": "pa"}))
    progress = event(note("notifications/progress", progressToken="pa", progress=1),
                     name="message")
    w.chunk("ga", 0.51, progress)
    w.chunk("gb", 0.51, progress)  # A's progress on B's stream
    w.chunk("ga", 0.52, event(ok(1, content=[{"type": "text", "text": "a's data"}]),
                              name="message"))


def test_a_broadcasting_legacy_server_delivers_across_sessions() -> None:
    w = Wire()
    _broadcast_pair(w)
    w.ticks(1.0)
    flags = w.flags(dataclasses.replace(CFG, heartbeat_interval=0))
    cross = only(flags, "cross-session-delivery")  # once per pair of sessions
    assert cross.severity == "error" and cross.details["sessions"] == [1, 2]
    assert "session #2 received an answer to request id 0 of session #1" in cross.message
    assert "orphan-response" not in kinds(flags)


def test_cross_session_progress_is_flagged() -> None:
    w = Wire()
    a, b = "a" * 32, "b" * 32
    w.legacy_open("ga", 0.0, a)
    w.legacy_open("gb", 0.05, b)
    w.legacy_post("ta", 0.5, a, rpc(1, "tools/call", name="x", _meta={"progressToken": "pa"}))
    w.chunk("gb", 0.51, event(note("notifications/progress", progressToken="pa", progress=1),
                              name="message"))
    cross = only(w.flags(dataclasses.replace(CFG, heartbeat_interval=0)),
                 "cross-session-delivery")
    assert 'progress with token "pa" of session #1 for its tools/call x (id 1)' in cross.message
    assert cross.session_id == 2


def test_two_sessions_with_the_same_ids_answered_apart_are_fine() -> None:
    w = Wire()
    for name, t in (("a", 0.0), ("b", 0.05)):
        w.legacy_open("g" + name, t, name * 32)
    for name, t in (("a", 0.1), ("b", 0.3)):
        w.legacy_post("t" + name, t, name * 32, rpc(1, "tools/list"))
        w.chunk("g" + name, t + 0.01, event(ok(1, tools=[]), name="message"))
    assert "cross-session-delivery" not in kinds(w.flags(dataclasses.replace(
        CFG, heartbeat_interval=0)))


# --- invalid-message --------------------------------------------------------------------------


def test_invalid_sse_data_and_post_body() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    w.chunk("g", 1.1, event(data="this is not json"))
    w.post("p", 2.0, b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"', headers,
           status=400, sse=False)
    w.end("p", 2.01)
    flags = [f for f in w.flags() if f.kind == "invalid-message"]
    assert [f.message.split(" is not")[0] for f in flags] == [
        "SSE data of GET /mcp", "a POST body of POST /mcp"]
    assert all("invalid JSON" in f.message for f in flags)


def test_other_event_streams_are_not_judged_as_json_rpc() -> None:
    w = Wire()
    w.get("g", 1.0, [], url=SERVER + "/events")  # some other app's SSE through the proxy
    w.chunk("g", 1.1, event(data="hello") + event(data="42 degrees"))
    w.fail("g", 1.2, "Client disconnected.")
    assert w.flags() == []


def test_a_json_error_page_is_not_a_bad_json_rpc_answer() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(1, "tools/list"), headers, status=404, sse=False, url=MCP + "/")
    w.chunk("p", 1.01, {"detail": "Not Found"})
    w.end("p", 1.01)
    assert "invalid-message" not in kinds(w.flags())


def test_non_mcp_json_posts_are_not_judged() -> None:
    w = Wire()
    w.request("r", 1.0, "POST", SERVER + "/register", [JSON_CT],
              {"redirect_uris": ["http://localhost/cb"]})
    w.respond("r", 1.01, 201, [JSON_CT])
    w.chunk("r", 1.01, {"client_id": "abc"})
    w.end("r", 1.01)
    assert w.flags() == []


# --- security ---------------------------------------------------------------------------------


def test_plaintext_remote_and_missing_auth() -> None:
    w = Wire()
    remote = "http://mcp.example.com/mcp"
    w.post("p", 1.0, rpc(0, "initialize"), [JSON_CT, ACCEPT], url=remote, sse=False)
    w.chunk("p", 1.01, ok(0, protocolVersion="2025-06-18"))
    w.end("p", 1.01)
    flags = w.flags()
    assert only(flags, "plaintext-remote").severity == "warning"
    assert "http://mcp.example.com:80" in only(flags, "plaintext-remote").message
    assert only(flags, "missing-auth").severity == "info"


def test_https_with_auth_or_after_a_challenge_is_fine() -> None:
    w = Wire()
    url = "https://mcp.example.com/mcp"
    w.post("a", 1.0, rpc(0, "initialize"), [JSON_CT, ACCEPT], url=url, status=401, sse=False)
    w.end("a", 1.01)
    w.post("b", 2.0, rpc(0, "initialize"), [JSON_CT, ACCEPT], url=url, sse=False)
    w.chunk("b", 2.01, ok(0))
    w.end("b", 2.01)
    w.post("c", 3.0, rpc(0, "initialize"), [JSON_CT, ACCEPT, ("Authorization", "Bearer x")],
           url="https://other.example.com/mcp", sse=False)
    w.chunk("c", 3.01, ok(0))
    w.end("c", 3.01)
    assert w.flags() == []


def test_loopback_named_as_remote_is_checked_like_remote() -> None:
    w = Wire()
    w.post("p", 1.0, rpc(0, "initialize"), [JSON_CT, ACCEPT], sse=False)
    w.chunk("p", 1.01, ok(0))
    w.end("p", 1.01)
    assert w.flags() == []
    cfg = dataclasses.replace(CFG, remote_hosts=("127.0.0.1:8000",))
    assert sorted(kinds(w.flags(cfg))) == ["missing-auth", "plaintext-remote"]


def test_token_in_url_but_not_the_legacy_session_id() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.post("p", 1.0, rpc(1, "tools/list"), headers, url=MCP + "?access_token=abc&x=1")
    w.legacy_open("g", 2.0, "c" * 32)
    w.legacy_post("i", 2.1, "c" * 32, rpc(0, "initialize"))
    flag = only(w.flags(dataclasses.replace(CFG, heartbeat_interval=0, request_timeout=0)),
                "token-in-url")
    assert flag.severity == "error" and "(access_token)" in flag.message
    assert "abc" not in flag.message  # key names only, never the value


def test_wildcard_cors_and_a_foreign_origin_accepted() -> None:
    w = Wire()
    evil = [JSON_CT, ACCEPT, ("Origin", "http://evil.example")]
    w.post("p", 1.0, rpc(0, "initialize"), evil, sse=False,
           response_headers=[("Access-Control-Allow-Origin", "*")])
    w.chunk("p", 1.01, ok(0))
    w.end("p", 1.01)
    flags = w.flags()
    assert "Access-Control-Allow-Origin: '*'" in only(flags, "wildcard-cors").message
    assert "foreign Origin 'http://evil.example'" in only(flags, "origin-accepted").message


def test_origin_refused_or_local_is_fine() -> None:
    w = Wire()
    w.post("p", 1.0, rpc(0, "initialize"), [JSON_CT, ACCEPT, ("Origin", "http://evil.example")],
           status=403, sse=False)
    w.end("p", 1.01)
    w.post("q", 2.0, rpc(0, "initialize"),
           [JSON_CT, ACCEPT, ("Origin", "http://localhost:6274")], sse=False)
    w.chunk("q", 2.01, ok(0))
    w.end("q", 2.01)
    assert serious(w.flags()) == []


# --- clean sessions as the official SDKs produce them -----------------------------------------


def test_clean_streamable_session_python_style() -> None:
    w = Wire()
    headers = w.initialize(0.0)
    w.get("g", 0.05, headers)
    t = 0.05
    for i in range(1, 30):
        w.chunk("g", t + 0.2 * i, PING)
    w.post("c", 1.0, rpc(1, "tools/call", name="countdown", _meta={"progressToken": 1}), headers)
    for i in range(1, 4):
        w.chunk("c", 1.0 + 0.05 * i, event(note("notifications/progress", progressToken=1,
                                                 progress=i, total=3)))
    w.chunk("c", 1.2, event(ok(1, content=[])))
    w.end("c", 1.2)
    w.post("s", 2.0, rpc(2, "tools/call", name="slow"), headers)
    w.chunk("s", 2.2, PING)
    w.chunk("s", 2.4, PING)
    w.chunk("s", 2.5, event(ok(2, content=[])))
    w.end("s", 2.5)
    w.post("x", 3.0, rpc(3, "resources/read", uri="demo://missing"), headers)
    w.chunk("x", 3.01, event(err(3, 0, "Unknown resource")))
    w.end("x", 3.01)
    w.request("d", 5.0, "DELETE", MCP, headers)
    w.respond("d", 5.01, 200, [])
    w.end("d", 5.01)
    w.fail("g", 5.02, "Client disconnected.")
    w.ticks(12.0)
    cfg = dataclasses.replace(CFG, heartbeat_interval=0.2, idle_timeouts=(1.0,),
                              idle_tolerance=0.15)
    assert serious(w.flags(cfg)) == []
    assert kinds(w.flags(cfg)) == ["error-response"]


def test_clean_legacy_session_and_typescript_405() -> None:
    w = Wire()
    w.legacy_open("g", 0.0, "a" * 32)
    w.legacy_post("i", 0.1, "a" * 32, rpc(0, "initialize"))
    w.chunk("g", 0.11, event(ok(0, protocolVersion="2024-11-05"), name="message"))
    w.legacy_post("n", 0.2, "a" * 32, note("notifications/initialized"))
    for i in range(1, 20):
        w.chunk("g", 0.2 * i, PING)
        w.legacy_post(f"p{i}", 0.2 * i + 0.05, "a" * 32, rpc(i, "ping"))
        w.chunk("g", 0.2 * i + 0.06, event(ok(i), name="message"))
    w.fail("g", 4.0, "Client disconnected.")
    headers = w.initialize(5.0, sid="q" * 32, user_agent="node")
    w.get("g405", 5.1, headers, status=405)
    w.ticks(10.0)
    assert w.flags(dataclasses.replace(CFG, heartbeat_interval=0.2)) == []


# --- configuration ----------------------------------------------------------------------------


def test_durations_and_config_options() -> None:
    assert parse_duration("30s") == 30.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120.0
    assert parse_duration(1.5) == 1.5
    with pytest.raises(HealthConfigError):
        parse_duration("soon")
    cfg = config_from_mapping({"request_timeout": "30s", "idle-timeouts": ["1s", 60],
                               "remote_hosts": ["Tunnel.Local"]})
    assert cfg.request_timeout == 30.0 and cfg.idle_timeouts == (1.0, 60.0)
    assert cfg.remote_hosts == ("tunnel.local",)
    assert cfg.timeout_for("elicitation/create") == 0.0
    with pytest.raises(HealthConfigError, match="unknown check option 'heartbeat'"):
        config_from_mapping({"heartbeat": 3})
    with pytest.raises(HealthConfigError, match="storm_count"):
        config_from_mapping({"storm_count": 0})
    # A config survives the round trip through the capture's meta table.
    assert config_from_mapping(orjson.loads(orjson.dumps(cfg.to_json()))) == cfg


def test_every_kind_has_a_default_severity() -> None:
    assert set(FLAG_KINDS.values()) <= {"info", "warning", "error"}
    assert len(FLAG_KINDS) == 25  # 23 raised by the detectors, 2 by the recorder (recorder.gaps)


# --- live and offline agree -------------------------------------------------------------------


def test_live_ticks_wait_for_a_backlog_of_facts() -> None:
    """Facts processed 3 s late (a busy recorder) do not make their stream look silent."""
    from recorder.live import LiveChecks

    class _Writer:
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def next_id(self, table: str) -> int:
            return len(self.rows) + 1

        def insert(self, table: str, row: dict[str, Any]) -> None:
            self.rows.append(row)

    w = Wire()
    headers = w.initialize(100.0)
    w.get("g", 101.0, headers)
    for i in range(1, 9):
        w.chunk("g", 101.0 + 0.2 * i, PING)
    facts = [e for e in w.events if not isinstance(e, Tick)]
    wall = 0.0

    class _Null:
        def write(self, text: str) -> None:
            pass

        def flush(self) -> None:
            pass

    writer = _Writer()
    live = LiveChecks(writer, CFG, console=_Null(), clock=lambda: wall)  # type: ignore[arg-type]
    for fact in facts:
        wall = fact.t + 3.0  # every fact reaches the checks 3 s after the proxy saw it
        live(fact)
        live(Tick(wall))
    assert writer.rows == []
    live(Tick(wall + 5.0))  # the backlog is gone; the silence is real
    assert [r["kind"] for r in writer.rows] == ["heartbeat-missing"]



def test_offline_check_reproduces_the_live_flags(tmp_path: Path) -> None:
    """The same script through a real store: flags from `check` match the live ones."""
    from recorder.check import run_check, store_flags
    from recorder.live import LiveChecks
    from recorder.store import Capture, StoreWriter

    cfg = dataclasses.replace(CFG, request_timeout=2.0)
    db = tmp_path / "c.db"
    writer = StoreWriter(db)
    console: list[str] = []

    class _Console:
        def write(self, text: str) -> None:
            console.append(text)

        def flush(self) -> None:
            pass

    w = Wire()
    live = LiveChecks(writer, cfg, console=_Console(), clock=lambda: w.t)  # type: ignore[arg-type]
    w.ingest = Ingest(writer, Redactor(None), [live], update_interval=1e9)
    headers = w.initialize(0.0)
    w.get("g", 1.0, headers)
    for i in range(1, 5):
        w.chunk("g", 1.0 + 0.2 * i, PING)
    w.post("p", 2.0, rpc(3, "tools/call", name="hang"), headers)
    w.post("x", 2.5, rpc(4, "completion/complete"), headers)
    w.chunk("x", 2.51, event(err(4, -32601, "Method not found")))
    w.end("x", 2.51)
    w.ticks(5.0)
    w.ingest.close(5.0)
    writer.close()

    with Capture(db) as capture:
        live_rows = capture.flags_by_source("live")
    # (completion/complete without its params also breaks the schema rule of the lint.)
    assert sorted(r["kind"] for r in live_rows) == [
        "error-response", "heartbeat-missing", "heartbeat-missing", "request-timeout",
        "spec-violation"]
    assert sum(line.startswith("ssetap: [") for line in "".join(console).splitlines()) == 5

    result, _ = run_check(db, cfg)
    assert sorted(f.kind for f in result.flags) == sorted(r["kind"] for r in live_rows)
    assert all(result.seen_live)
    assert store_flags(result) == 0  # nothing new: no duplicate rows for `sessions`/`show`
