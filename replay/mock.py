"""Serve a capture as a mock MCP server over real HTTP, both transports at once.

Design notes:
- Streamable HTTP on the recorded endpoint (default `/mcp`): POST answers as the recorded
  server did for that request (an SSE stream or one JSON body), with a fresh
  `Mcp-Session-Id` per `initialize` (none for stateless recordings); GET opens the session
  stream (or 405 if the recorded server refused it); DELETE ends the session.
  Legacy HTTP+SSE on `/sse` + `/messages/`: GET announces a fresh endpoint, every answer goes
  out on that stream, POSTs get `202 Accepted`. Either transport serves any capture.
- Answers are looked up by method and normalised params (`replay.matching`) and go out under
  the client's id, with the client's progress token; the server's own requests get fresh ids.
  An unmatched request gets a JSON-RPC error naming the closest recorded request.
- Timing is the recording's: each scripted item leaves at its recorded delay after the request
  arrived, heartbeats on the session stream at their recorded offsets from its opening; `fast`
  drops delays and heartbeats, `xN` divides delays by N.
- Sessions live in memory for the life of the server; each has its own matcher, so repeated
  identical requests get the recorded sequence of answers.
- Resumable: every SSE answer is played into the session's event store (`replay.event_log`)
  by a task that outlives the response, with event ids as recorded (or generated); a GET with
  `Last-Event-ID` gets exactly the events after that one, as a resumable server would.
- Batches (a JSON array of messages) are answered, as one JSON array of responses, when the
  session's protocol version allows them (2025-03-26 and before); later versions refuse them
  as the SDK servers do.
- Many recorded sessions: a client session's `initialize` picks the recorded session that
  best matches it (`catalog.choose_profile`; the choice is logged), whose handshake and
  answers serve it from then on; a request that session never made falls back to the
  answers of all sessions pooled. `--session` loads one session, which then serves everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from recorder.jsonrpc import classify, id_key
from recorder.model import NOTIFICATION, REQUEST
from replay.catalog import (
    PROGRESS,
    RESPONSE,
    SERVER_REQUEST,
    Catalog,
    ProfileChoice,
    Reply,
    ScriptItem,
    SessionProfile,
    choose_profile,
)
from replay.event_log import EventStore
from replay.matching import Matcher
from replay.plan import RECORDED, Timing

if TYPE_CHECKING:
    pass

_SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
_SERVER_INFO = {"name": "ssetap-mock", "version": "0.1.0"}


class MockError(Exception):
    """The mock server could not start (bad address, busy port)."""


@dataclass(eq=False)
class MockSession:
    """One client session on the mock."""

    id: str
    matcher: Matcher[Reply]
    next_server_id: int = 1
    # The recorded session serving this one (chosen at initialize) and the pooled fallback.
    profile: SessionProfile | None = None
    pooled: Matcher[Reply] | None = None
    # Legacy transport: everything the session stream will carry.
    outbox: asyncio.Queue[bytes] | None = None
    # Scripts still playing, by the client's request id key (for cancellation).
    playing: dict[str, asyncio.Event] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    events: EventStore = field(default_factory=EventStore)
    # The protocol version this session negotiated (from its recorded handshake).
    protocol_version: str | None = None

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def end(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for stop in self.playing.values():
            stop.set()

    def server_id(self) -> int:
        value = self.next_server_id
        self.next_server_id += 1
        return value


def _rpc_error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


class MockApp:
    """The ASGI application and the session state behind it."""

    def __init__(self, catalog: Catalog, timing: Timing = RECORDED,
                 log: Callable[[str], None] | None = None) -> None:
        self.catalog = catalog
        self.timing = timing
        self.log = log
        self.sessions: dict[str, MockSession] = {}
        self._stateless = MockSession("", catalog.index.matcher())
        self.unmatched = 0
        # Which recorded session served each client session, in order (also logged).
        self.choices: list[ProfileChoice] = []
        self._client_sessions = 0
        self._profile_matchers: dict[int, Matcher[Reply]] = {}
        routes = [
            Route(catalog.streamable_path, self.streamable, methods=["GET", "POST", "DELETE"]),
            Route(catalog.sse_path, self.legacy_stream, methods=["GET"]),
            Route(catalog.messages_path, self.legacy_post, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)

    # Scripts ---------------------------------------------------------------------------------

    def _frame(self, item: ScriptItem, data: str | None, event_id: str | None = None) -> bytes:
        sep = self.catalog.separator
        lines = []
        event_id = event_id if event_id is not None else item.event_id
        if event_id is not None:
            lines.append(f"id: {event_id}")
        if item.kind == "event" and item.event_type and item.event_type != "message":
            lines.append(f"event: {item.event_type}")
        elif item.kind == "message":
            lines.append("event: message")
        if item.retry is not None:
            lines.append(f"retry: {item.retry}")
        if data is not None:
            lines.extend(f"data: {line}" for line in data.split("\n"))
        return (sep.join(lines) + sep + sep).encode()

    def _frame_of(self, item: ScriptItem, payload: Any, event_id: str | None = None) -> bytes:
        if item.kind == "comment":
            return f": {item.text}{self.catalog.separator}{self.catalog.separator}".encode()
        if item.kind == "event":
            return self._frame(item, item.text, event_id)
        return self._frame(item, orjson.dumps(payload).decode(), event_id)

    def _payload(self, session: MockSession, item: ScriptItem, client_id: Any,
                 token: Any) -> Any:
        """The scripted message with the live ids put in; None to leave the item out."""
        payload = item.payload
        if not isinstance(payload, dict):
            return None
        if item.role == RESPONSE:
            return {**payload, "id": client_id}
        if item.role == PROGRESS:
            if token is None:
                return None  # the client asked for no progress
            return {**payload, "params": {**(payload.get("params") or {}), "progressToken": token}}
        if item.role == SERVER_REQUEST:
            return {**payload, "id": session.server_id()}
        return payload

    async def _play(self, session: MockSession, items: tuple[ScriptItem, ...], client_id: Any,
                    token: Any, stop: asyncio.Event) -> AsyncIterator[tuple[ScriptItem, Any]]:
        """The scripted items with their payloads, each at its (scaled) recorded delay; ends
        early on `stop`."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for item in items:
            offset = self.timing.scaled(item.delay)
            if offset is None and item.kind == "comment":
                continue  # fast: heartbeats only matter with timing
            payload = None
            if item.kind == "message":
                payload = self._payload(session, item, client_id, token)
                if payload is None:
                    continue
            if offset is not None and (wait := start + offset - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await stop.wait()
            if stop.is_set():
                return
            yield item, payload

    async def _frames(self, session: MockSession, items: tuple[ScriptItem, ...],
                      client_id: Any, token: Any, stop: asyncio.Event) -> AsyncIterator[bytes]:
        async for item, payload in self._play(session, items, client_id, token, stop):
            yield self._frame_of(item, payload)

    def _answer(self, session: MockSession, method: str, params: Any,
                client_id: Any) -> Reply | dict[str, Any]:
        """The recorded reply to this request, or an error response naming the closest one."""
        if method == "initialize":
            chosen = self._choose(session, params)
            if chosen is not None:
                return chosen
        matcher = session.matcher
        if session is self._stateless and self.catalog.sessionless_choice:
            matcher = self._sessionless_matcher(params)
        candidate = matcher.match(method, params)
        if candidate is None and matcher is not session.matcher:
            candidate = session.matcher.match(method, params)
        if candidate is None and session.pooled is not None:
            candidate = session.pooled.match(method, params)
        if candidate is not None:
            return candidate.value
        if method == "ping":
            return {"jsonrpc": "2.0", "id": client_id, "result": {}}
        if method == "initialize":
            version = params.get("protocolVersion") if isinstance(params, dict) else None
            return {"jsonrpc": "2.0", "id": client_id,
                    "result": {"protocolVersion": version or "2025-06-18", "capabilities": {},
                               "serverInfo": _SERVER_INFO}}
        self.unmatched += 1
        closest = session.matcher.closest(method, params)
        if closest is None:
            return _rpc_error(client_id, -32601,
                              f"ssetap mock: the capture has no {method} request")
        same = closest.method == method
        text = (f"ssetap mock: no recorded {method} request has these params; closest recorded "
                f"request: {closest.describe()}" if same else
                f"ssetap mock: the capture has no {method} request; closest recorded request: "
                f"{closest.describe()}")
        return _rpc_error(client_id, -32602 if same else -32601, text,
                          {"closest": {"method": closest.method, "params": closest.params}})

    def _choose(self, session: MockSession, params: Any) -> Reply | None:
        """Serve this client session from the best-matching recorded session; its handshake."""
        choice = choose_profile(self.catalog.profiles, params)
        if choice is None:
            return self.catalog.initialize
        profile = choice.profile
        if session is not self._stateless:
            session.profile = profile
            session.pooled = session.matcher
            session.matcher = profile.index.matcher()
        self._client_sessions += 1
        self.choices.append(choice)
        session.protocol_version = profile.protocol_version
        if self.log is not None:
            info = params.get("clientInfo") if isinstance(params, dict) else None
            name = info.get("name") if isinstance(info, dict) else None
            version = params.get("protocolVersion") if isinstance(params, dict) else None
            self.log(f"client session {self._client_sessions} ({name or 'unnamed client'}, "
                     f"protocol {version or '?'}) served from {profile.describe()}: "
                     f"{choice.reason}")
        return profile.initialize

    def _sessionless_matcher(self, params: Any) -> Matcher[Reply]:
        """A 2026-07-28 request: the answers of the recorded session its `_meta` matches."""
        choice = choose_profile(self.catalog.profiles, params, sessionless=True)
        assert choice is not None  # sessionless_choice means there are profiles
        profile = choice.profile
        matcher = self._profile_matchers.get(profile.session_id)
        if matcher is None:
            matcher = self._profile_matchers[profile.session_id] = profile.index.matcher()
            self.choices.append(choice)
            if self.log is not None:
                self.log(f"sessionless requests like this one served from "
                         f"{profile.describe()}: {choice.reason}")
        return matcher

    def _stream_items(self, session: MockSession) -> tuple[ScriptItem, ...]:
        if session.profile is not None and len(self.catalog.profiles) > 1:
            return session.profile.stream_items
        return self.catalog.stream_items

    @staticmethod
    def _token(params: Any) -> Any:
        meta = params.get("_meta") if isinstance(params, dict) else None
        return meta.get("progressToken") if isinstance(meta, dict) else None

    def _client_message(self, session: MockSession, message: Any) -> None:
        """Notifications and responses from the client: only cancellations matter."""
        if message.method == "notifications/cancelled":
            params = message.payload.get("params") or {}
            stop = session.playing.get(id_key(params.get("requestId")))
            if stop is not None:
                stop.set()

    # Streamable HTTP -------------------------------------------------------------------------

    async def streamable(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._streamable_post(request)
        session, refusal = self._session_of(request)
        if refusal is not None:
            return refusal
        assert session is not None
        if request.method == "DELETE":
            self.sessions.pop(session.id, None)
            session.end()
            return Response(status_code=200)
        last_event_id = request.headers.get("last-event-id")
        if last_event_id:
            resumed = session.events.after(last_event_id)
            if resumed is not None:
                log, position = resumed
                return StreamingResponse(log.follow(position), media_type="text/event-stream",
                                         headers=self._headers(session))
        if not self.catalog.get_allowed:
            return Response(status_code=405, headers={"Allow": "POST, DELETE"})
        if session.outbox is not None:
            return JSONResponse(_rpc_error("server-error", -32600, "Conflict: Only one SSE "
                                           "stream is allowed per session"), 409)
        session.outbox = asyncio.Queue()
        return StreamingResponse(self._outbox_stream(session), media_type="text/event-stream",
                                 headers=self._headers(session))

    def _headers(self, session: MockSession, sse: bool = True) -> dict[str, str]:
        headers = dict(_SSE_HEADERS) if sse else {}
        if session.id:
            headers["mcp-session-id"] = session.id
        return headers

    def _session_of(self, request: Request) -> tuple[MockSession | None, Response | None]:
        if self.catalog.stateless:
            return self._stateless, None
        session_id = request.headers.get("mcp-session-id")
        if not session_id:
            return None, JSONResponse(_rpc_error("server-error", -32600,
                                                 "Bad Request: Missing session ID"), 400)
        session = self.sessions.get(session_id)
        if session is None:
            return None, JSONResponse(_rpc_error("server-error", -32600, "Session not found"),
                                      404)
        return session, None

    async def _streamable_post(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return JSONResponse(_rpc_error(None, -32700, f"Parse error: {exc}"), 400)
        if isinstance(body, list):
            return await self._batch(request, body)
        if not isinstance(body, dict):
            return JSONResponse(_rpc_error(None, -32600, "Invalid Request"), 400)
        message = classify(body)
        if message.kind == REQUEST and message.method == "initialize":
            session = self._new_session()
        else:
            found, refusal = self._session_of(request)
            if refusal is not None:
                return refusal
            assert found is not None
            session = found
        if message.kind != REQUEST:
            self._client_message(session, message)
            return Response(status_code=202, headers=self._headers(session, sse=False))
        client_id = body.get("id")
        params = body.get("params")
        answer = self._answer(session, message.method or "", params, client_id)
        if isinstance(answer, dict):
            return JSONResponse(answer, headers=self._headers(session, sse=False))
        stop = asyncio.Event()
        key = id_key(client_id)
        session.playing[key] = stop
        token = self._token(params)
        if answer.mode == "json":
            # A JSON reply carries the response alone, when it is due.
            response = None
            try:
                async for item, payload in self._play(session, answer.items, client_id, token,
                                                      stop):
                    if item.role == RESPONSE:
                        response = payload
                    elif session.outbox is not None and item.kind == "message":
                        # No room in a JSON reply: the session stream carries the rest.
                        session.outbox.put_nowait(self._frame_of(item, payload))
                if response is None:
                    await stop.wait()  # recorded unanswered: hold the request, as it was
                    return Response(status_code=204, headers=self._headers(session, sse=False))
            finally:
                session.playing.pop(key, None)
            return JSONResponse(response, headers=self._headers(session, sse=False))
        number, log = session.events.open()

        async def produce() -> None:
            # Written to the store whether or not the client still reads (see event_log).
            try:
                async for item, payload in self._play(session, answer.items, client_id, token,
                                                      stop):
                    if item.kind == "comment":
                        log.append(None, self._frame_of(item, payload))
                        continue
                    event_id = session.events.event_id(item.event_id)
                    session.events.add(number, event_id, self._frame_of(item, payload, event_id))
                if not answer.answered:
                    await stop.wait()  # recorded unanswered: hold the stream open, as it was
            finally:
                session.playing.pop(key, None)
                log.close()

        session.spawn(produce())
        return StreamingResponse(log.follow(), media_type="text/event-stream",
                                 headers=self._headers(session))

    async def _batch(self, request: Request, body: list[Any]) -> Response:
        """A JSON-RPC batch: answered as a JSON array where the session's version allows it."""
        found, refusal = self._session_of(request)
        if refusal is not None:
            return refusal
        assert found is not None
        session = found
        version = session.protocol_version
        if not body or version is None or version >= "2025-06-18":
            why = (f"protocol version {version} does not allow them (removed in 2025-06-18)"
                   if version else "the session has no protocol version that allows them")
            return JSONResponse(_rpc_error(None, -32600, f"ssetap mock: batches refused: {why}"),
                                400)
        requests = []
        for element in body:
            message = classify(element) if isinstance(element, dict) else None
            if message is None:
                return JSONResponse(_rpc_error(None, -32600, "Invalid Request in batch"), 400)
            if message.kind == REQUEST:
                requests.append(element)
            else:
                self._client_message(session, message)
        if not requests:
            return Response(status_code=202, headers=self._headers(session, sse=False))
        answers = await asyncio.gather(*(self._batch_answer(session, r) for r in requests))
        return JSONResponse([a for a in answers if a is not None],
                            headers=self._headers(session, sse=False))

    async def _batch_answer(self, session: MockSession, body: dict[str, Any]) -> Any:
        """One request of a batch: its response payload when due (the rest to the session
        stream, as a JSON reply would)."""
        client_id = body.get("id")
        params = body.get("params")
        answer = self._answer(session, str(body.get("method") or ""), params, client_id)
        if isinstance(answer, dict):
            return answer
        stop = asyncio.Event()
        key = id_key(client_id)
        session.playing[key] = stop
        response = None
        try:
            async for item, payload in self._play(session, answer.items, client_id,
                                                  self._token(params), stop):
                if item.role == RESPONSE:
                    response = payload
                elif session.outbox is not None and item.kind == "message":
                    session.outbox.put_nowait(self._frame_of(item, payload))
        finally:
            session.playing.pop(key, None)
        return response

    def _new_session(self) -> MockSession:
        if self.catalog.stateless:
            return self._stateless
        session = MockSession(uuid.uuid4().hex, self.catalog.index.matcher())
        self.sessions[session.id] = session
        return session

    async def _outbox_stream(self, session: MockSession,
                             first: bytes | None = None) -> AsyncIterator[bytes]:
        """A session stream: the recorded heartbeats and unprompted notifications at their
        offsets from the stream's opening, merged with whatever replies put in the outbox."""
        outbox = session.outbox
        assert outbox is not None

        async def schedule() -> None:
            never = asyncio.Event()
            async for frame in self._frames(session, self._stream_items(session), None, None,
                                            never):
                outbox.put_nowait(frame)

        task = asyncio.create_task(schedule())
        session.tasks.add(task)
        try:
            if first is not None:
                yield first
            while True:
                yield await outbox.get()
        finally:
            task.cancel()
            session.outbox = None

    # Legacy HTTP+SSE -------------------------------------------------------------------------

    async def legacy_stream(self, request: Request) -> Response:
        session = MockSession(uuid.uuid4().hex, self.catalog.index.matcher(),
                              outbox=asyncio.Queue())
        self.sessions[session.id] = session
        sep = self.catalog.separator
        endpoint = f"{self.catalog.messages_path}?session_id={session.id}"
        announce = f"event: endpoint{sep}data: {endpoint}{sep}{sep}".encode()

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for frame in self._outbox_stream(session, announce):
                    yield frame
            finally:
                # The legacy session lives as long as its stream.
                self.sessions.pop(session.id, None)
                session.end()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers=dict(_SSE_HEADERS))

    async def legacy_post(self, request: Request) -> Response:
        session_id = request.query_params.get("session_id") or request.query_params.get(
            "sessionId")
        if not session_id:
            return Response("session_id is required", status_code=400)
        session = self.sessions.get(session_id)
        if session is None or session.outbox is None:
            return Response("Could not find session", status_code=404)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Response("Could not parse message", status_code=400)
        if isinstance(body, list) and body and all(isinstance(m, dict) for m in body):
            # 2024-11-05 allows batches; every answer goes out on the stream anyway.
            for element in body:
                self._legacy_message(session, element)
            return Response("Accepted", status_code=202)
        message = classify(body) if isinstance(body, dict) else None
        if message is None or message.kind not in (REQUEST, NOTIFICATION, "result", "error"):
            return Response("Could not parse message", status_code=400)
        self._legacy_message(session, body)
        return Response("Accepted", status_code=202)

    def _legacy_message(self, session: MockSession, body: dict[str, Any]) -> None:
        """One client message on the legacy transport: its answer goes out on the stream."""
        message = classify(body)
        if message.kind != REQUEST:
            self._client_message(session, message)
            return
        client_id = body.get("id")
        answer = self._answer(session, message.method or "", body.get("params"), client_id)
        outbox = session.outbox
        assert outbox is not None
        if isinstance(answer, dict):
            outbox.put_nowait(self._frame(ScriptItem(0, "message"), orjson.dumps(answer).decode()))
            return
        stop = asyncio.Event()
        key = id_key(client_id)
        session.playing[key] = stop
        frames = self._frames(session, answer.items, client_id, self._token(body.get("params")),
                              stop)

        async def play() -> None:
            try:
                async for frame in frames:
                    outbox.put_nowait(frame)
            finally:
                session.playing.pop(key, None)

        session.spawn(play())
