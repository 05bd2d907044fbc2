"""Fixtures for the TUI tests: captures built by code through the real recorder core.

`build_story` feeds scripted proxy facts (requests, response heads, SSE chunks) with fixed
times into `recorder.ingest.Ingest` writing through a `StoreWriter`, exactly as a recording
does, then adds a few flags by hand (the health checks have their own tests). Same input,
same rows: the snapshots are deterministic. The checked-in sample captures are copied to a
temporary directory before use, since opening a WAL capture creates sidecar files.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from recorder.ingest import Ingest
from recorder.redact import Redactor
from recorder.store import StoreWriter

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SERVER = "http://127.0.0.1:8000"
KEY = bytes(range(32))  # a fixed pseudonym key: fixed redacted ids


def rpc(method: str | None = None, rpc_id: int | None = None, **fields: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if rpc_id is not None:
        message["id"] = rpc_id
    if method is not None:
        message["method"] = method
    message.update(fields)
    return orjson.dumps(message)


def sse_event(payload: bytes) -> bytes:
    return b"event: message\r\ndata: " + payload + b"\r\n\r\n"


@dataclass
class Script:
    """Scripted proxy facts for one capture, fed to the recorder core."""

    writer: StoreWriter
    ingest: Ingest = field(init=False)
    flows: int = 0

    def __post_init__(self) -> None:
        self.ingest = Ingest(self.writer, Redactor(KEY))

    def _flow(self) -> str:
        self.flows += 1
        return f"flow-{self.flows}"

    def post(self, t: float, body: bytes, *, session: str | None, path: str = "/mcp",
             answer: bytes | None = None, events: list[tuple[float, bytes]] | None = None,
             status: int = 200, latency: float = 0.02, end: float | None = None,
             assign: str | None = None) -> str:
        """A POST answered with JSON (`answer`), with an SSE stream (`events`), or 202;
        `assign` is the session id an initialize response hands out."""
        flow = self._flow()
        headers = [("Host", "127.0.0.1:8000"), ("Content-Type", "application/json"),
                   ("Accept", "application/json, text/event-stream"),
                   ("Authorization", "Bearer sk-test-secret-token-123456")]
        if session:
            headers.append(("Mcp-Session-Id", session))
        self.ingest.feed(("q", flow, t, "POST", SERVER + path, "HTTP/1.1", headers, body,
                          "127.0.0.1:50000"))
        response = [("content-type", "application/json")] if answer is not None else []
        if events is not None:
            response = [("content-type", "text/event-stream")]
        if session or assign:
            response.append(("mcp-session-id", session or assign or ""))
        if answer is None and events is None:
            status = 202
        self.ingest.feed(("h", flow, t + 0.001, status, "OK" if status == 200 else "Accepted",
                          response, events is not None))
        if events is not None:
            for at, data in events:
                self.ingest.feed(("c", flow, at, data))
            self.ingest.feed(("e", flow, end if end is not None else events[-1][0], None))
        else:
            self.ingest.feed(("e", flow, t + latency, answer))
        return flow

    def open_get(self, t: float, session: str, path: str = "/mcp") -> str:
        flow = self._flow()
        self.ingest.feed(("q", flow, t, "GET", SERVER + path, "HTTP/1.1",
                          [("Host", "127.0.0.1:8000"), ("Accept", "text/event-stream"),
                           ("Mcp-Session-Id", session)], None, "127.0.0.1:50001"))
        self.ingest.feed(("h", flow, t + 0.002, 200, "OK",
                          [("content-type", "text/event-stream"), ("mcp-session-id", session)],
                          True))
        return flow

    def chunk(self, flow: str, t: float, data: bytes) -> None:
        self.ingest.feed(("c", flow, t, data))

    def end(self, flow: str, t: float) -> None:
        self.ingest.feed(("e", flow, t, None))

    def flag(self, t: float, kind: str, severity: str, message: str, **ids: int | None) -> None:
        self.writer.insert("flags", {"id": self.writer.next_id("flags"), "t": t, "kind": kind,
                                     "severity": severity, "message": message, **ids})


SESSION = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def build_story(path: Path) -> dict[str, Any]:
    """One Streamable HTTP session with everything the browser must show.

    initialize, tools/list (JSON answer), a countdown with progress on its POST stream, an
    isError result, a JSON-RPC error, heartbeats on the GET stream, a 12 s silence, a call
    cancelled by the client, a ping; then a second, small session. Returns ids for asserts.
    """
    writer = StoreWriter(path)
    s = Script(writer)
    s.post(T0, rpc("initialize", 0, params={
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "story-client", "version": "1.0"}}), session=None,
        assign=SESSION, events=[(T0 + 0.010, sse_event(rpc(rpc_id=0, result={
            "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "story-server", "version": "2.0"}})))])
    s.post(T0 + 0.050, rpc("notifications/initialized"), session=SESSION)
    get = s.open_get(T0 + 0.060, SESSION)
    s.chunk(get, T0 + 0.070, b": ping\r\n\r\n")
    s.post(T0 + 0.100, rpc("tools/list", 1), session=SESSION, answer=rpc(rpc_id=1, result={
        "tools": [{"name": "countdown"}, {"name": "echo"}, {"name": "slow"}]}))
    s.post(T0 + 0.200, rpc("tools/call", 2, params={
        "name": "countdown", "arguments": {"n": 2}, "_meta": {"progressToken": "p2"}}),
        session=SESSION, events=[
            (T0 + 0.250, sse_event(rpc("notifications/progress", params={
                "progressToken": "p2", "progress": 1, "total": 2, "message": "T-2"}))),
            (T0 + 0.300, sse_event(rpc("notifications/progress", params={
                "progressToken": "p2", "progress": 2, "total": 2, "message": "T-1"}))),
            (T0 + 0.350, sse_event(rpc(rpc_id=2, result={
                "content": [{"type": "text", "text": "liftoff"}]})))])
    s.post(T0 + 0.400, rpc("tools/call", 3, params={"name": "echo", "arguments": {"text": "x"}}),
           session=SESSION, events=[(T0 + 0.420, sse_event(rpc(rpc_id=3, result={
               "content": [{"type": "text", "text": "echo failed"}], "isError": True})))])
    s.post(T0 + 0.500, rpc("resources/read", 4, params={"uri": "demo://missing"}),
           session=SESSION, answer=rpc(rpc_id=4, error={
               "code": -32002, "message": "Resource not found"}))
    s.chunk(get, T0 + 0.600, b": ping\r\n\r\n")
    # Twelve seconds of nothing at all: the gap the timeline must make obvious.
    slow = s.post(T0 + 12.600, rpc("tools/call", 5, params={
        "name": "slow", "arguments": {"seconds": 30}}), session=SESSION, events=[
            (T0 + 12.610, b": keepalive\r\n\r\n")], end=T0 + 13.100)
    s.post(T0 + 13.000, rpc("notifications/cancelled", params={
        "requestId": 5, "reason": "user pressed stop"}), session=SESSION)
    s.post(T0 + 13.500, rpc("ping", 6), session=SESSION, answer=rpc(rpc_id=6, result={}))
    s.chunk(get, T0 + 13.600, b": ping\r\n\r\n")
    s.end(get, T0 + 14.000)
    assert slow
    # A second session, legacy-free and tiny, so the sessions table has two rows.
    other = "ffeeddccbbaa99887766554433221100"
    s.post(T0 + 20.0, rpc("initialize", 0, params={
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "other-client", "version": "0.1"}}), session=None,
        assign=other, answer=rpc(rpc_id=0, result={"protocolVersion": "2025-06-18", "capabilities": {},
                                     "serverInfo": {"name": "story-server", "version": "2.0"}}))
    s.ingest.feed(("t", T0 + 20.5))
    s.post(T0 + 20.6, rpc("tools/list", 1), session=other, answer=rpc(rpc_id=1, result={
        "tools": []}))
    s.ingest.close(T0 + 21.0)
    writer.flush()
    ids = _story_ids(path, writer)
    s.flag(T0 + 0.600, "stream-gap", "warning", "no bytes on the GET stream for 13.0 s",
           session_id=1, stream_id=ids["get_stream"])
    s.flag(T0 + 0.510, "error-response", "error",
           "resources/read answered with JSON-RPC error -32002", session_id=1,
           message_id=ids["error_message"], call_id=ids["error_call"])
    s.flag(T0 + 13.000, "cancelled", "info", "the client cancelled tools/call slow after 0.4 s",
           session_id=1, call_id=ids["slow_call"])
    writer.close()
    return ids


def _story_ids(path: Path, writer: StoreWriter) -> dict[str, Any]:
    from recorder.store import BrowseReader

    with BrowseReader(path) as reader:
        calls = {c["rpc_id"]: c for c in reader.calls(1)}
        streams = reader.streams(1)
    return {
        "get_stream": next(s["id"] for s in streams if s["role"] == "get"),
        "error_message": calls["4"]["response_message_id"],
        "error_call": calls["4"]["id"],
        "slow_call": calls["5"]["id"],
        "countdown_request": calls["2"]["request_message_id"],
        "countdown_response": calls["2"]["response_message_id"],
    }


@pytest.fixture(autouse=True)
def no_animations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tab underlines and scrolls jump instead of gliding: Pilot waits for an idle CPU after
    every key, and an animation keeps it busy for a quarter of a second."""
    monkeypatch.setattr("textual.constants.TEXTUAL_ANIMATIONS", "none")


@pytest.fixture(scope="session")
def story_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("story") / "story.db"
    ids = build_story(path)
    return path, ids


@pytest.fixture
def story(story_template: tuple[Path, dict[str, Any]],
          tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A private copy of the story capture (reading a WAL capture writes sidecars)."""
    path = tmp_path / "story.db"
    shutil.copy(story_template[0], path)
    return path, story_template[1]


@pytest.fixture
def sample(tmp_path: Path) -> Callable[[str], Path]:
    """A private copy of a checked-in sample capture, by name."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copy(ROOT / "sample_captures" / name, target)
        return target

    return copy


async def _settle(pilot: Any, timeout: float = 10.0) -> None:
    """Wait until workers are done and every visible timeline row is loaded."""
    from tui.widgets.timeline import Timeline

    app = pilot.app
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause()
        busy = [w for w in app.workers if not w.is_finished]
        timelines = list(app.screen.query(Timeline))
        if not busy and all(t.index_complete and t.visible_rows_loaded() for t in timelines):
            await pilot.pause()
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the app did not settle")


@pytest.fixture
def settle() -> Callable[..., Any]:
    """`await settle(pilot)`: wait until workers are done and visible timeline rows loaded."""
    return _settle


def _plain(widget: Any, width: int = 120) -> str:
    """What a Static shows, as plain text (its content is a Rich renderable or a string)."""
    import io

    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


@pytest.fixture
def plain() -> Callable[..., str]:
    """`plain(static)`: the text a Static widget shows."""
    return _plain


class Posted(list[Any]):
    """Messages the app processed (`message_hook=posted.append`). A bubbling message is
    processed once per widget it passes; `of` counts each message once."""

    def of(self, kind: type[Any]) -> list[Any]:
        # Some messages are dataclasses (unhashable): count by identity.
        return list({id(m): m for m in self if isinstance(m, kind)}.values())


@pytest.fixture
def messages() -> Iterator[Posted]:
    yield Posted()
