"""The fault-injection mitmproxy addon behind `ssetap record --fault`: the proxy misbehaves on purpose.

The second mitmproxy addon (one addon class per module, as mitmproxy's own addons are kept;
tests/test_layering.py allows this module to import mitmproxy). What to do is decided by the
pure `recorder.faults`; this shell only applies it:

- `request` (async, after the recorder saw the request): `session-lost` answers 404, `error`
  answers a JSON-RPC error, `delay` holds the request, `hang` holds it until the client goes
  away. On legacy HTTP+SSE the answer travels on the session's GET stream, so `hang` and
  `error` let the POST through and change the response there instead.
- `responseheaders` (after the recorder put its tap in): an SSE response gets a
  `StreamFilter` in front of the tap, so the capture holds the bytes the client received.
- Closing a stream (`cut-stream`, `idle-cut`) closes the proxy's connection to the server
  (`ConnectionHandler.close_connection`, the proxy server's own command): mitmproxy then
  ends the client's response mid-body, as a middlebox cutting the path does. mitmproxy cannot
  kill a flow in transit (mitmproxy#4711), and a stream callable only runs when the server
  writes, so the idle timer is an asyncio timer here.
- Every change goes to the recorder as an `f` raw event (flow, time, injection JSON), so the
  capture says what was injected, where and when.

Without `--fault` this addon is not loaded at all: traffic passes untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from mitmproxy import ctx, exceptions, http

from recorder.addon import PROXY_ANSWERED
from recorder.fault_stream import StreamFilter
from recorder.faults import (
    SESSION_NOT_FOUND_BODY,
    FaultConfig,
    FaultPlan,
    FaultSpecError,
    Injection,
    RequestAction,
    describe,
    request_target,
)

log = logging.getLogger("ssetap")


def _session_key(request: http.Request) -> str | None:
    header: str | None = request.headers.get("mcp-session-id")
    if header:
        return header
    query = parse_qs(urlsplit(request.url).query)
    for name in ("session_id", "sessionId"):
        if query.get(name):
            return query[name][0]
    return None


class FaultInjector:
    """Changes the forwarded traffic as the `ssetap_faults` specs say, and records each change."""

    def __init__(self) -> None:
        self.plan: FaultPlan | None = None
        self._hangs: dict[str, asyncio.Event] = {}  # client connection id -> released on close
        self._legacy: dict[str, StreamFilter] = {}  # legacy session id -> its GET stream's filter
        self._timers: set[asyncio.TimerHandle] = set()

    def load(self, loader: Any) -> None:
        loader.add_option("ssetap_faults", str, "",
                          "JSON of ssetap's fault specs and schedule (ssetap record --fault).")

    def configure(self, updated: set[str]) -> None:
        if "ssetap_faults" not in updated:
            return
        try:
            config = FaultConfig.from_json(ctx.options.ssetap_faults)
        except (FaultSpecError, orjson.JSONDecodeError) as exc:
            raise exceptions.OptionsError(f"ssetap_faults: {exc}") from None
        self.plan = FaultPlan(config) if config.specs else None

    def done(self) -> None:
        for event in self._hangs.values():
            event.set()
        for timer in self._timers:
            timer.cancel()

    # Recording ------------------------------------------------------------------------------

    def _record(self, flow: http.HTTPFlow, injection: Injection) -> None:
        recorder = ctx.master.addons.get("recorder")
        if recorder is not None:
            recorder.record_injection(flow.id, injection.t, orjson.dumps(asdict(injection)))
        log.info(f"ssetap: {describe(injection)}")

    # Hooks ------------------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        plan = self.plan
        if plan is None or flow.response is not None:
            return
        req = flow.request
        key = _session_key(req)
        now = time.time()
        method, name, id_value = request_target(req.raw_content if req.method == "POST" else None)
        action = plan.for_request(key, now, method, name, id_value)
        if action is None:
            return
        legacy = self._legacy.get(key) if key is not None else None
        if legacy is not None and action.action in ("hang", "error"):
            # The answer comes on the GET stream: change it there when it passes.
            legacy.response_actions[orjson.dumps(id_value).decode()] = action
            return
        self._record(flow, action.injection(now, method, name))
        if action.action in ("404", "error"):
            flow.metadata[PROXY_ANSWERED] = True
        if action.action == "404":
            flow.response = http.Response.make(404, SESSION_NOT_FOUND_BODY,
                                               {"content-type": "application/json"})
        elif action.action == "error":
            flow.response = self._error_response(req, action)
        elif action.action == "delay":
            assert action.seconds is not None
            await asyncio.sleep(action.seconds)
        elif action.action == "hang":
            await self._hang(flow)

    @staticmethod
    def _error_response(req: http.Request, action: RequestAction) -> http.Response:
        headers = {"content-type": "application/json"}
        session = req.headers.get("mcp-session-id")
        if session:
            headers["mcp-session-id"] = session
        return http.Response.make(200, action.error_body(), headers)

    async def _hang(self, flow: http.HTTPFlow) -> None:
        # Never answered: hold the request until the client gives up (or the proxy stops),
        # then drop it without an answer.
        conn = flow.client_conn.id
        event = self._hangs.setdefault(conn, asyncio.Event())
        await event.wait()
        self._hangs.pop(conn, None)
        if flow.killable:
            flow.kill()

    def client_disconnected(self, client: Any) -> None:
        event = self._hangs.get(client.id)
        if event is not None:
            event.set()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        plan = self.plan
        resp = flow.response
        if plan is None or resp is None:
            return
        if "text/event-stream" not in resp.headers.get("content-type", "").lower():
            return
        key = _session_key(flow.request)
        if key is None and flow.request.method == "GET":
            key = f"stream:{flow.id}"  # legacy: the session id comes in the endpoint event
        stream_filter = StreamFilter(plan, key, time.time())
        resp.stream = self._wrap(flow, stream_filter, resp.stream)
        if stream_filter.idle_seconds is not None:
            self._arm_idle(flow, stream_filter)

    def _wrap(self, flow: http.HTTPFlow, stream_filter: StreamFilter,
              inner: Any) -> Callable[[bytes], Iterable[bytes]]:
        def filtered(data: bytes) -> Iterable[bytes]:
            out = stream_filter.feed(data, time.time())
            for injection in out.injections:
                self._record(flow, injection)
            session = stream_filter.legacy_session
            if session is not None and session not in self._legacy:
                self._legacy[session] = stream_filter
            if out.close:
                asyncio.get_running_loop().call_soon(self._cut, flow)
            sent = inner(out.data) if callable(inner) else out.data
            if isinstance(sent, bytes):
                # An empty chunk would end a chunked body: send nothing instead.
                return [sent] if sent else []
            return [chunk for chunk in sent if chunk]

        return filtered

    def _arm_idle(self, flow: http.HTTPFlow, stream_filter: StreamFilter) -> None:
        seconds = stream_filter.idle_seconds
        assert seconds is not None
        loop = asyncio.get_running_loop()

        def check() -> None:
            self._timers.discard(handle)
            if not flow.live or stream_filter.cut:
                return
            injection = stream_filter.idle_expired(time.time())
            if injection is not None:
                self._record(flow, injection)
                self._cut(flow)
                return
            self._arm_idle(flow, stream_filter)

        last = stream_filter.last_activity
        delay = max(0.05, min(seconds, last + seconds - time.time()))
        handle = loop.call_later(delay, check)
        self._timers.add(handle)

    @staticmethod
    def _cut(flow: http.HTTPFlow) -> None:
        handler = ctx.master.addons.get("proxyserver").connections.get(flow.client_conn.id)
        if handler is None:
            return
        try:
            handler.close_connection(flow.server_conn)
        except (KeyError, AssertionError):  # the server side is already gone
            pass
