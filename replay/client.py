"""Replay's MCP client transports on httpx: legacy HTTP+SSE and Streamable HTTP.

Design notes:
- A channel moves JSON-RPC messages and nothing else: the engine decides what to send and
  what the answers mean. Incoming messages are decoded with `recorder.jsonrpc` and handed to
  the engine's hooks as they arrive; SSE bodies are read incrementally with `recorder.sse`.
- `send()` returns once the server has the message, not once it has answered, so requests
  the recorded client had in flight together stay in flight together. "Has it" is the
  response head (a 202, or the start of an SSE reply); a JSON reply only comes with the
  answer, so for requests the request body leaving the socket, plus a short grace, counts.
- Live values only. The session id comes from the live `Mcp-Session-Id` header or the live
  `endpoint` event; `Last-Event-ID` is the last id this client saw on the stream being
  resumed. Nothing from the capture's headers is ever sent; `--header` adds fresh ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import orjson

from recorder.jsonrpc import decode
from recorder.model import ERROR, SSE, STREAMABLE_HTTP, RpcMessage, SseControl, SseEvent
from recorder.sse import SseParser

USER_AGENT = "ssetap-replay/0.1"
# After a request body is on the wire, how long to wait for the response head before moving on
# (only JSON-mode servers, whose head comes with the answer, ever use it up).
ACCEPT_GRACE = 0.02
ENDPOINT_TIMEOUT = 10.0
RESUME_ATTEMPTS = 2
DEFAULT_RETRY_MS = 500


class TransportError(Exception):
    """The target cannot be reached or does not speak MCP on this URL."""


class TransportMismatch(TransportError):
    """The target answered, but not with this transport (try the other one)."""


@dataclass(slots=True)
class Hooks:
    """What a channel reports to the engine."""

    deliver: Callable[[RpcMessage], None]
    # (live request id key or None, description): an HTTP or transport failure.
    failed: Callable[[str | None, str], None]
    # live request id key: its response stream ended before its response.
    stream_ended: Callable[[str], None]
    # the whole session stream ended (legacy transport): nothing more can arrive.
    closed: Callable[[str], None]
    is_pending: Callable[[str], bool]
    # (message, live request id key or None, the lost session id): the server answered 404
    # to a message on an established session; the engine re-initializes and resends it.
    session_lost: Callable[[dict[str, Any], str | None, str], None] | None = None


_PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"


def revision_headers(message: dict[str, Any]) -> dict[str, str]:
    """The headers a 2026-07-28 server checks against the body (a mismatch is a 400).

    Only messages that carry their protocol version in `_meta` (that revision's mark) get
    them; earlier servers never see these headers.
    """
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    version = meta.get(_PROTOCOL_VERSION_KEY) if isinstance(meta, dict) else None
    method = message.get("method")
    if not isinstance(version, str) or not isinstance(method, str):
        return {}
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    assert isinstance(params, dict)
    name = params.get("name") if method in ("tools/call", "prompts/get") else (
        params.get("uri") if method.startswith("resources/") else None)
    if isinstance(name, str):
        headers["Mcp-Name"] = name
    return headers


def _media_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()


def _short(data: bytes | str, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Channel:
    """Base of both transports: hooks, headers, background tasks."""

    transport = ""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: dict[str, str],
                 hooks: Hooks) -> None:
        self.http = http
        self.url = url
        self.hooks = hooks
        self.extra_headers = headers
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        """Open whatever the transport needs before the first message."""

    async def send(self, message: dict[str, Any], request_key: str | None) -> None:
        raise NotImplementedError

    async def initialized(self) -> None:
        """The handshake is done (the client's `notifications/initialized` was accepted)."""

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _deliver_data(self, data: str) -> None:
        for message in decode(data):
            self.hooks.deliver(message)


class StreamableChannel(Channel):
    """Streamable HTTP: every message a POST; replies as JSON or SSE; a standalone GET stream."""

    transport = STREAMABLE_HTTP

    def _headers(self, message: dict[str, Any] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version:
            headers["MCP-Protocol-Version"] = self.protocol_version
        if message is not None:
            headers.update(revision_headers(message))
        headers.update(self.extra_headers)
        return headers

    async def send(self, message: dict[str, Any], request_key: str | None) -> None:
        accepted = asyncio.Event()
        mismatch: list[str] = []
        task = self._spawn(self._post(message, request_key, accepted, mismatch))
        await accepted.wait()
        if mismatch:
            await asyncio.gather(task, return_exceptions=True)
            raise TransportMismatch(mismatch[0])

    async def _post(self, message: dict[str, Any], request_key: str | None,
                    accepted: asyncio.Event, mismatch: list[str]) -> None:
        loop = asyncio.get_running_loop()

        async def trace(name: str, info: dict[str, Any]) -> None:
            if request_key is not None and name == "http11.send_request_body.complete":
                loop.call_later(ACCEPT_GRACE, accepted.set)

        response: httpx.Response | None = None
        try:
            request = self.http.build_request("POST", self.url, content=orjson.dumps(message),
                                              headers=self._headers(message),
                                              extensions={"trace": trace})
            try:
                response = await self.http.send(request, stream=True)
            except httpx.HTTPError as exc:
                if message.get("method") == "initialize" and self.session_id is None:
                    raise TransportError(f"cannot reach {self.url}: {_describe(exc)}") from None
                self.hooks.failed(request_key, f"POST failed: {_describe(exc)}")
                return
            session_id = response.headers.get("mcp-session-id")
            if session_id and self.session_id is None:
                self.session_id = session_id
            accepted.set()
            await self._answer(response, message, request_key, mismatch)
        except TransportError as exc:
            mismatch.append(str(exc))
        except httpx.HTTPError as exc:
            self.hooks.failed(request_key, f"reading the reply failed: {_describe(exc)}")
        finally:
            accepted.set()
            if response is not None:
                await response.aclose()

    async def _answer(self, response: httpx.Response, message: dict[str, Any],
                      request_key: str | None, mismatch: list[str]) -> None:
        status = response.status_code
        if status == 202:
            return
        media = _media_type(response)
        if not 200 <= status < 300:
            body = await response.aread()
            if (status == 404 and self.session_id and message.get("method") != "initialize"
                    and self.hooks.session_lost is not None):
                # The spec's signal that the session is gone (a restart, an expiry).
                self.hooks.session_lost(message, request_key, self.session_id)
                return
            if message.get("method") == "initialize" and status in (400, 404, 405):
                mismatch.append(f"POST {self.url} answered HTTP {status} ({_short(body, 80)})")
                return
            # A JSON-RPC error naming this very request is the server's answer, not a failure.
            if "json" in media and request_key is not None:
                for decoded in decode(body):
                    if decoded.kind == ERROR and decoded.id_key == request_key:
                        self.hooks.deliver(decoded)
                        return
            self.hooks.failed(request_key, f"HTTP {status}: {_short(body)}")
            return
        if media == "text/event-stream":
            await self._read_stream(response, request_key, RESUME_ATTEMPTS)
        elif media == "application/json" or (media.endswith("+json")):
            self._deliver_data((await response.aread()).decode("utf-8", "replace"))
        elif request_key is not None:
            body = await response.aread()
            self.hooks.failed(request_key, f"HTTP {status} with content type {media or 'none'}: "
                                           f"{_short(body)}")

    async def _read_stream(self, response: httpx.Response, request_key: str | None,
                           attempts: int) -> None:
        parser = SseParser()
        last_id: str | None = None
        retry: int | None = None
        try:
            async for chunk in response.aiter_bytes():
                for item in parser.feed(chunk):
                    if isinstance(item, SseEvent):
                        last_id = item.last_event_id
                        retry = item.retry if item.retry is not None else retry
                        if item.data and item.type == "message":
                            self._deliver_data(item.data)
                    elif isinstance(item, SseControl):
                        last_id = item.last_event_id
                        retry = item.retry if item.retry is not None else retry
        except httpx.HTTPError:
            pass  # a dropped stream: resume below if the server gave event ids
        if request_key is None or not self.hooks.is_pending(request_key):
            return
        if last_id and attempts > 0:
            await asyncio.sleep((retry if retry is not None else DEFAULT_RETRY_MS) / 1000)
            if await self._resume(last_id, request_key, attempts - 1):
                return
        self.hooks.stream_ended(request_key)

    async def _resume(self, last_id: str, request_key: str, attempts: int) -> bool:
        """GET with Last-Event-ID (the live cursor) to pick the stream up where it dropped."""
        headers = self._headers()
        headers.update({"Accept": "text/event-stream", "Last-Event-ID": last_id})
        headers.pop("Content-Type", None)
        try:
            async with self.http.stream("GET", self.url, headers=headers) as response:
                if response.status_code != 200 or _media_type(response) != "text/event-stream":
                    return False
                await self._read_stream(response, request_key, attempts)
                return True
        except httpx.HTTPError:
            return False

    async def initialized(self) -> None:
        if self.session_id:
            self._spawn(self._standalone())

    async def _standalone(self) -> None:
        """The GET stream for server-initiated messages; a 405 means the server has none."""
        headers = self._headers()
        headers["Accept"] = "text/event-stream"
        headers.pop("Content-Type", None)
        with contextlib.suppress(httpx.HTTPError):
            async with self.http.stream("GET", self.url, headers=headers) as response:
                if response.status_code == 200 and _media_type(response) == "text/event-stream":
                    await self._read_stream(response, None, 0)

    async def close(self) -> None:
        await super().close()
        if self.session_id:
            headers = self._headers()
            headers.pop("Content-Type", None)
            with contextlib.suppress(httpx.HTTPError, TimeoutError):
                async with asyncio.timeout(2):
                    await self.http.delete(self.url, headers=headers)


class LegacyChannel(Channel):
    """HTTP+SSE (2024-11-05): one GET stream carries every server message; POSTs get 202."""

    transport = SSE

    def __init__(self, http: httpx.AsyncClient, url: str, headers: dict[str, str],
                 hooks: Hooks) -> None:
        super().__init__(http, url, headers, hooks)
        self.endpoint: str | None = None
        self._ready = asyncio.Event()
        self._response: httpx.Response | None = None
        self._closed_reason: str | None = None

    async def start(self) -> None:
        headers = {"Accept": "text/event-stream", "User-Agent": USER_AGENT, **self.extra_headers}
        try:
            request = self.http.build_request("GET", self.url, headers=headers)
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}: {_describe(exc)}") from None
        if response.status_code != 200 or _media_type(response) != "text/event-stream":
            body = b"" if _media_type(response) == "text/event-stream" else await response.aread()
            await response.aclose()
            raise TransportMismatch(f"GET {self.url} answered HTTP {response.status_code} "
                                    f"{_media_type(response) or ''} {_short(body, 80)}".strip())
        self._response = response
        self._spawn(self._read(response))
        try:
            async with asyncio.timeout(ENDPOINT_TIMEOUT):
                await self._ready.wait()
        except TimeoutError:
            raise TransportError(f"GET {self.url} sent no endpoint event within "
                                 f"{ENDPOINT_TIMEOUT:g} s") from None
        if self.endpoint is None:
            raise TransportError(f"the SSE stream of {self.url} ended before its endpoint event "
                                 f"({self._closed_reason})")

    def _endpoint_event(self, data: str) -> None:
        endpoint = urljoin(self.url, data.strip())
        mine, theirs = urlsplit(self.url), urlsplit(endpoint)
        if (mine.scheme, mine.netloc) != (theirs.scheme, theirs.netloc):
            # Same rule as the SDK client: never POST somewhere the stream did not come from.
            self._closed_reason = f"endpoint {endpoint} is on another origin"
            self._ready.set()
            return
        self.endpoint = endpoint
        for name, value in parse_qsl(theirs.query):
            if name.lower() in ("session_id", "sessionid"):
                self.session_id = value
        self._ready.set()

    async def _read(self, response: httpx.Response) -> None:
        parser = SseParser()
        reason = "the server closed the SSE stream"
        try:
            async for chunk in response.aiter_bytes():
                for item in parser.feed(chunk):
                    if not isinstance(item, SseEvent):
                        continue
                    if item.type == "endpoint" and self.endpoint is None:
                        self._endpoint_event(item.data)
                    elif item.type == "message" and item.data:
                        self._deliver_data(item.data)
        except httpx.HTTPError as exc:
            reason = f"the SSE stream failed: {_describe(exc)}"
        finally:
            await response.aclose()
        self._closed_reason = reason
        self._ready.set()
        self.hooks.closed(reason)

    async def send(self, message: dict[str, Any], request_key: str | None) -> None:
        if self.endpoint is None:
            raise TransportError("the legacy SSE session has no endpoint")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **self.extra_headers}
        try:
            response = await self.http.post(self.endpoint, content=orjson.dumps(message),
                                            headers=headers)
        except httpx.HTTPError as exc:
            self.hooks.failed(request_key, f"POST failed: {_describe(exc)}")
            return
        if response.status_code not in (200, 202, 204):
            self.hooks.failed(request_key, f"HTTP {response.status_code}: "
                                           f"{_short(response.content)}")

    async def close(self) -> None:
        # Reading tasks are cancelled by the base class; the stream closes with them.
        self.hooks = Hooks(lambda m: None, lambda k, d: None, lambda k: None, lambda r: None,
                           lambda k: False)
        await super().close()


def make_channel(transport: str, http: httpx.AsyncClient, url: str, headers: dict[str, str],
                 hooks: Hooks) -> Channel:
    if transport == SSE:
        return LegacyChannel(http, url, headers, hooks)
    return StreamableChannel(http, url, headers, hooks)


def transport_order(url: str, choice: str) -> list[str]:
    """Which transports to try, in order: the chosen one, or a guess from the URL and then
    the other (the spec's backwards-compatibility fallback)."""
    if choice in (SSE, STREAMABLE_HTTP):
        return [choice]
    path = urlsplit(url).path.rstrip("/")
    if path.endswith("/sse"):
        return [SSE, STREAMABLE_HTTP]
    return [STREAMABLE_HTTP, SSE]
