"""`ssetap serve --fault`: an ASGI middleware that makes the mock misbehave on purpose.

The specs and every decision are `recorder.faults` (the same as `ssetap record --fault`); this
shell applies them around the mock's ASGI app:
- requests: `session-lost` answers 404, `error` a JSON-RPC error, `delay` holds the request,
  `hang` holds it until the client goes away. On legacy HTTP+SSE the answer travels on the
  session's GET stream, so `hang` and `error` change the response there instead.
- SSE responses go through a `StreamFilter`; `cut-stream` and `idle-cut` end the response
  without its last chunk (the connection closes mid-body, as when a middlebox cuts it).
- Every change is kept in `injections` (the mock has no capture to write to) and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from recorder.fault_stream import StreamFilter
from recorder.faults import (
    SESSION_NOT_FOUND_BODY,
    FaultConfig,
    FaultPlan,
    Injection,
    RequestAction,
    describe,
    request_target,
)

log = logging.getLogger("ssetap.mock")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class _StreamCut(Exception):
    """Raised into the mock's send when a fault closes its stream."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _session_key(scope: Scope) -> str | None:
    header = _header(scope, b"mcp-session-id")
    if header:
        return header
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    for name in ("session_id", "sessionId"):
        if query.get(name):
            return query[name][0]
    return None


class FaultMiddleware:
    """Wraps an ASGI app; `injections` lists what it changed, in order."""

    def __init__(self, app: App, config: FaultConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.plan = FaultPlan(config)
        self.clock = clock
        self.injections: list[Injection] = []
        self._legacy: dict[str, StreamFilter] = {}
        self._streams = 0

    def _record(self, injection: Injection) -> None:
        self.injections.append(injection)
        log.info(f"ssetap serve: {describe(injection)}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        replay: list[Message] = []
        if scope["method"] == "POST":
            while True:
                message = await receive()
                replay.append(message)
                body += message.get("body", b"")
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        key = _session_key(scope)
        now = self.clock()
        method, name, id_value = request_target(bytes(body) if body else None)
        action = self.plan.for_request(key, now, method, name, id_value)

        async def replayed() -> Message:
            return replay.pop(0) if replay else await receive()

        if action is not None:
            legacy = self._legacy.get(key) if key is not None else None
            if legacy is not None and action.action in ("hang", "error"):
                legacy.response_actions[orjson.dumps(id_value).decode()] = action
            else:
                self._record(action.injection(now, method, name))
                if await self._act(action, scope, receive, send):
                    return
        await self._serve(scope, replayed, send, key)

    async def _act(self, action: RequestAction, scope: Scope, receive: Receive,
                   send: Send) -> bool:
        """Apply a request fault; True when the request was answered (or dropped) here."""
        if action.action == "404":
            await _respond(send, 404, SESSION_NOT_FOUND_BODY)
            return True
        if action.action == "error":
            await _respond(send, 200, action.error_body(), _header(scope, b"mcp-session-id"))
            return True
        if action.action == "delay":
            assert action.seconds is not None
            await asyncio.sleep(action.seconds)
            return False
        # hang: never answer; wait for the client to go away.
        while (await receive())["type"] != "http.disconnect":
            pass
        return True

    async def _serve(self, scope: Scope, receive: Receive, send: Send, key: str | None) -> None:
        plan = self.plan
        state: dict[str, Any] = {"filter": None}
        cut = asyncio.Event()

        async def filtered_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctype = next((bytes(v).decode("latin-1") for k, v in message.get("headers", ())
                              if bytes(k).lower() == b"content-type"), "")
                if "text/event-stream" in ctype.lower():
                    stream_key = key
                    if stream_key is None and scope["method"] == "GET":
                        self._streams += 1
                        stream_key = f"stream:{self._streams}"
                    stream_filter = StreamFilter(plan, stream_key, self.clock())
                    state["filter"] = stream_filter
                await send(message)
                return
            stream_filter = state["filter"]
            if message["type"] != "http.response.body" or stream_filter is None:
                await send(message)
                return
            if stream_filter.cut:
                raise _StreamCut
            data = bytes(message.get("body", b""))
            more = bool(message.get("more_body"))
            out = stream_filter.feed(data, self.clock())
            if not more and not out.close:
                tail = stream_filter.feed(b"", self.clock())
                out = type(out)(out.data + tail.data, out.injections + tail.injections, False)
            for injection in out.injections:
                self._record(injection)
            session = stream_filter.legacy_session
            if session is not None and session not in self._legacy:
                self._legacy[session] = stream_filter
            if out.data or not more:
                await send({"type": "http.response.body", "body": out.data,
                            "more_body": more and not out.close})
            if out.close:
                cut.set()
                raise _StreamCut

        async def idle_watch() -> None:
            while not cut.is_set():
                stream_filter = state["filter"]
                seconds = stream_filter.idle_seconds if stream_filter else None
                if stream_filter is None or seconds is None:
                    await asyncio.sleep(0.05)
                    continue
                injection = stream_filter.idle_expired(self.clock())
                if injection is not None:
                    self._record(injection)
                    cut.set()
                    return
                await asyncio.sleep(min(0.05, seconds / 4))

        app_task = asyncio.ensure_future(self.app(scope, receive, filtered_send))
        watch = asyncio.ensure_future(idle_watch()) if any(
            s.kind == "idle-cut" for s in plan.stream_specs()) else None
        cut_wait = asyncio.ensure_future(cut.wait())
        try:
            await asyncio.wait({app_task, cut_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, cut_wait):
                if task is not None:
                    task.cancel()
        if cut.is_set():
            # Return without the response's last chunk: the server closes the connection
            # mid-body.
            app_task.cancel()
            try:
                await app_task
            except (asyncio.CancelledError, _StreamCut):
                pass
            return
        try:
            app_task.result()
        except _StreamCut:
            pass


async def _respond(send: Send, status: int, body: bytes, session: str | None = None) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if session:
        headers.append((b"mcp-session-id", session.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
