"""Run replay plans against a live MCP server over real HTTP and judge every call.

Design notes:
- The engine plays the recorded client: it sends each step when the responses it waited for
  have arrived (and, with recorded timing, not before its recorded offset), with fresh ids,
  fresh progress tokens and rewritten cancellations (see `replay.plan`). The transports in
  `replay.client` carry the live session id and Last-Event-ID.
- Responses are matched through the live-id map, never by position; a call is judged the
  moment its response arrives, so progress can be shown as the replay runs.
- The live server's own requests (sampling, elicitation, roots, ping) are answered with what
  the recorded client answered to the same request, under the live id.
- A call that gets no response is "missing" after its deadline; a call the recorded client
  cancelled, or never saw answered, is not waited for.
- Like a client, the engine follows the server: a 404 on its session (a restart, an expiry)
  makes it re-initialize with the recorded handshake and resend the message; the report says
  so in a note.
- Latency is reported, and fails a call only with `fail_on_slow`; then a call that looks slow
  (other than `initialize`) is sent again, `latency_samples` in all, one after another once
  the session is done, and judged on the median, so that one stall of a jittery server does
  not flip the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from recorder.jsonrpc import id_key
from recorder.model import ERROR, NOTIFICATION, REQUEST, RESULT, RpcMessage
from replay.client import (
    Channel,
    Hooks,
    TransportError,
    TransportMismatch,
    make_channel,
    transport_order,
)
from replay.diff import DEFAULT_OPTIONS, DiffOptions
from replay.plan import FAST, IdMap, Plan, Step, Timing, build_plan, live_message
from replay.recording import load_recordings
from replay.results import MISSING, SLOW, CallResult, ReplayResult, SessionResult
from replay.verdict import DEFAULT_LATENCY, LatencyLimit, LiveOutcome, judge, recorded_id

# How long a call whose response stream closed early may still be answered elsewhere.
STREAM_END_GRACE = 1.0


class TargetError(Exception):
    """The target could not be reached or spoke no MCP transport we know (bad input)."""


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """Everything that shapes a replay besides the capture and the target."""

    timing: Timing = FAST
    diff: DiffOptions = DEFAULT_OPTIONS
    latency: LatencyLimit = DEFAULT_LATENCY
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 30.0
    transport: str = "auto"
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    # Latency fails a call only when asked; then judged on the median of this many samples.
    fail_on_slow: bool = False
    latency_samples: int = 3


# How many times one session may be re-initialized after the server lost it.
MAX_REINITIALIZE = 3

DEFAULT_REPLAY: Final = ReplayOptions()

# Called with (plan, result) as each call is judged.
ResultCallback = Callable[[Plan, CallResult], None]


@dataclass(slots=True, eq=False)
class _LiveCall:
    step: Step
    live_id: Any
    key: str
    sent_at: float
    deadline: float
    done: asyncio.Event = field(default_factory=asyncio.Event)
    response: dict[str, Any] | None = None
    received_at: float | None = None
    progress: list[Any] = field(default_factory=list)
    result: CallResult | None = None
    # A re-measurement or a re-initialization: never judged, never reported.
    internal: bool = False

    @property
    def expects_response(self) -> bool:
        expectation = self.step.expectation
        return expectation is not None and expectation.response is not None


class SessionReplay:
    """Replays one plan over one live session."""

    def __init__(self, plan: Plan, target: str, http: httpx.AsyncClient,
                 options: ReplayOptions, on_result: ResultCallback | None = None) -> None:
        self.plan = plan
        self.target = target
        self.http = http
        self.options = options
        self.on_result = on_result
        self.ids = IdMap()
        self.tokens = IdMap()
        self.calls: dict[int, _LiveCall] = {}
        self.by_key: dict[str, _LiveCall] = {}
        self.by_token: dict[str, _LiveCall] = {}
        self.matcher = plan.answers.matcher()
        self.notes: list[str] = list(plan.notes)
        self.events: Counter[str] = Counter()
        self.channel: Channel | None = None
        self.fatal: str | None = None
        self._loop = asyncio.get_running_loop()
        self._answers: set[asyncio.Task[Any]] = set()
        self._held: list[_LiveCall] = []  # slow calls waiting to be re-measured
        self._reinit_lock = asyncio.Lock()
        self.reinitialized = 0
        self.hooks = Hooks(self._deliver, self._failed, self._stream_ended, self._closed,
                           self._is_pending, self._session_lost)

    # Running -------------------------------------------------------------------------------

    async def run(self) -> SessionResult:
        loop = self._loop
        start = loop.time()
        timing = self.options.timing
        try:
            for step in self.plan.steps:
                for dependency in step.waits_for:
                    await self._wait(self.calls.get(dependency))
                offset = timing.scaled(step.t)
                if offset is not None and (delay := start + offset - loop.time()) > 0:
                    await asyncio.sleep(delay)
                if self.fatal:
                    break
                await self._send(step)
                if step.method == "initialize" and step.is_request:
                    await self._after_initialize(self.calls[step.index])
                elif step.method == "notifications/initialized" and self.channel:
                    await self.channel.initialized()
            for call in list(self.calls.values()):
                if call.expects_response:
                    await self._wait(call)
            await self._remeasure()
        finally:
            if self.channel is not None:  # never connected: TargetError says it all
                for call in self.calls.values():
                    self._finish(call, missing=self.fatal or "no response before the replay ended")
            for call in self._held:
                self._report(call)
            self._held.clear()
            for task in self._answers:
                task.cancel()
            if self.channel is not None:
                await self.channel.close()
        return self._result()

    def _result(self) -> SessionResult:
        results = {c.step.index: c.result for c in self.calls.values() if c.result is not None}
        unsent = 0
        ordered: list[CallResult] = []
        for step in self.plan.steps:
            hidden = step.synthetic and step.index in results and results[step.index].ok
            if not step.is_request or hidden:  # a synthetic handshake shows only if it failed
                continue
            result = results.get(step.index)
            if result is None:
                unsent += 1
                result = CallResult(step.ordinal or 0, step.method, step.name, MISSING,
                                    detail=f"not sent: {self.fatal or 'the replay stopped'}",
                                    recorded_id=recorded_id(step))
            ordered.append(result)
        for name, count in sorted(self.events.items()):
            self.notes.append(f"{name}: {count}")
        session = self.plan.session
        return SessionResult(session.id, session.key, session.transport,
                             self.channel.transport if self.channel else None, tuple(ordered),
                             tuple(self.notes), self.fatal if unsent else None,
                             self.plan.skipped)

    async def _send(self, step: Step) -> None:
        call: _LiveCall | None = None
        if step.is_request:
            live_id = self.ids.fresh(step.payload.get("id"))
            now = self._loop.time()
            recorded_s = (step.expectation.latency_ms or 0) / 1000 if step.expectation else 0
            call = _LiveCall(step, live_id, id_key(live_id), now,
                             now + max(self.options.timeout, 2 * recorded_s))
            self.calls[step.index] = call
            self.by_key[call.key] = call
        token = None
        if step.progress_token is not None and call is not None:
            token = self.tokens.fresh(step.progress_token)
            self.by_token[id_key(token)] = call
        cancel_id = None
        if step.cancels is not None:
            target = self.calls.get(step.cancels)
            cancel_id = target.live_id if target else None
        message = live_message(step, call.live_id if call else None, progress_token=token,
                               cancel_id=cancel_id)
        key = call.key if call else None
        # Latency runs from here: a fast answer may arrive before send() returns.
        if self.channel is None:
            await self._connect(message, key)
        else:
            await self.channel.send(message, key)

    async def _connect(self, message: dict[str, Any], key: str | None) -> None:
        """Open the session on the target's transport, trying the other one on a mismatch."""
        problems = []
        headers = dict(self.options.headers)
        for transport in transport_order(self.target, self.options.transport):
            channel = make_channel(transport, self.http, self.target, headers, self.hooks)
            try:
                await channel.start()
                if key in self.by_key:
                    # Opening the legacy stream is not part of the first call's latency.
                    self.by_key[key].sent_at = self._loop.time()
                await channel.send(message, key)
            except TransportMismatch as exc:
                problems.append(f"{transport}: {exc}")
                await channel.close()
                continue
            except TransportError as exc:
                await channel.close()
                raise TargetError(str(exc)) from None
            self.channel = channel
            return
        raise TargetError(f"{self.target} speaks neither MCP transport ({'; '.join(problems)})")

    async def _after_initialize(self, call: _LiveCall) -> None:
        await self._wait(call)
        response = call.response or {}
        result = response.get("result")
        if isinstance(result, dict) and self.channel is not None:
            version = result.get("protocolVersion")
            self.channel.protocol_version = version if isinstance(version, str) else None
        elif call.result is not None and not call.result.ok:
            self.fatal = f"initialize failed ({call.result.detail or call.result.status})"
        elif "error" in response:
            self.fatal = f"initialize failed: {response['error']}"

    async def _wait(self, call: _LiveCall | None) -> None:
        if call is None or call.done.is_set():
            return
        remaining = call.deadline - self._loop.time()
        if remaining > 0:
            try:
                async with asyncio.timeout(remaining):
                    await call.done.wait()
                return
            except TimeoutError:
                pass
        waited = f"no response within {call.deadline - call.sent_at:.3g} s"
        self._finish(call, missing=waited)
        if self.channel is not None and not self.fatal:
            # As a real client would: tell the server we gave up on it.
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": call.live_id, "reason": f"ssetap replay: {waited}"}}
            with contextlib.suppress(TransportError):
                await self.channel.send(cancel, None)

    @staticmethod
    def _latency(call: _LiveCall) -> float | None:
        if call.received_at is None:
            return None
        return round((call.received_at - call.sent_at) * 1000, 3)

    def _finish(self, call: _LiveCall, *, failure: str | None = None,
                missing: str | None = None) -> None:
        if call.done.is_set():
            return
        if call.internal:
            call.done.set()
            return
        outcome = LiveOutcome(call.response, self._latency(call), tuple(call.progress), failure,
                              missing)
        call.result = judge(call.step, outcome, options=self.options.diff,
                            latency=self.options.latency, fail_on_slow=self.options.fail_on_slow)
        call.done.set()
        # initialize is never sent twice on one session: it is judged on its one sample.
        if (call.result.status == SLOW and self.options.latency_samples > 1 and not self.fatal
                and call.step.method != "initialize"):
            self._held.append(call)  # reported once re-measured
        else:
            self._report(call)

    def _report(self, call: _LiveCall) -> None:
        if self.on_result is not None and not call.step.synthetic and call.result is not None:
            self.on_result(self.plan, call.result)

    async def _internal(self, step: Step, message: dict[str, Any] | None = None) -> _LiveCall:
        """Send a request of the plan again under a fresh id, outside the verdicts."""
        assert self.channel is not None
        live_id = self.ids.fresh(step.payload.get("id"))
        now = self._loop.time()
        call = _LiveCall(step, live_id, id_key(live_id), now, now + self.options.timeout,
                         internal=True)
        self.by_key[call.key] = call
        token = None
        if step.progress_token is not None:
            token = self.tokens.fresh(step.progress_token)
            self.by_token[id_key(token)] = call
        await self.channel.send(message or live_message(step, live_id, progress_token=token),
                                call.key)
        await self._wait(call)
        return call

    async def _remeasure(self) -> None:
        """Judge the calls that looked slow on the median of `latency_samples` samples."""
        held, self._held = self._held, []
        for call in held:
            samples = [self._latency(call)]
            for _ in range(self.options.latency_samples - 1):
                if self.fatal or self.channel is None:
                    break
                with contextlib.suppress(TransportError):
                    samples.append(self._latency(await self._internal(call.step)))
            measured = [s for s in samples if s is not None]
            median = round(statistics.median(measured), 3) if measured else None
            outcome = LiveOutcome(call.response, median, tuple(call.progress))
            result = judge(call.step, outcome, options=self.options.diff,
                           latency=self.options.latency, fail_on_slow=True)
            detail = (f"{result.detail}; " if result.detail else "") + \
                f"median of {len(measured)} samples"
            call.result = CallResult(result.ordinal, result.method, result.name, result.status,
                                     result.latency_ms, result.recorded_latency_ms,
                                     result.differences, detail, result.slow,
                                     result.recorded_id)
            self._report(call)
        if held:
            self.notes.append(f"{len(held)} call{'s' if len(held) != 1 else ''} that looked "
                              f"slow sent again, judged on the median of "
                              f"{self.options.latency_samples} samples")

    # Following the server ------------------------------------------------------------------

    def _session_lost(self, message: dict[str, Any], key: str | None, lost: str) -> None:
        task = asyncio.create_task(self._recover(message, key, lost))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _recover(self, message: dict[str, Any], key: str | None, lost: str) -> None:
        """Re-initialize once per lost session, then resend the message that got the 404."""
        channel = self.channel
        if channel is None:
            return
        async with self._reinit_lock:
            if channel.session_id == lost:
                problem = await self._reinitialize(channel)
                if problem is not None:
                    self.fatal = problem
                    self._closed(problem)
                    return
        if self.fatal:
            return
        try:
            await channel.send(message, key)
        except TransportError as exc:
            self._failed(key, str(exc))

    async def _reinitialize(self, channel: Channel) -> str | None:
        """The recorded handshake on a fresh session; a description of the failure, or None."""
        init = next((s for s in self.plan.steps if s.method == "initialize" and s.is_request),
                    None)
        if init is None:
            return "the server lost the session (HTTP 404) and the plan has no initialize"
        if self.reinitialized >= MAX_REINITIALIZE:
            return (f"the server lost the session (HTTP 404) again after "
                    f"{self.reinitialized} re-initializations")
        self.reinitialized += 1
        answered = sum(1 for c in self.calls.values() if c.done.is_set())
        channel.session_id = None
        try:
            call = await self._internal(init)
            if not isinstance((call.response or {}).get("result"), dict):
                return "the server lost the session (HTTP 404) and re-initializing failed"
            await channel.send({"jsonrpc": "2.0", "method": "notifications/initialized"}, None)
            await channel.initialized()
        except TransportError as exc:
            return f"the server lost the session (HTTP 404) and re-initializing failed: {exc}"
        self.notes.append(f"the server lost the session (HTTP 404) after {answered} answered "
                          "calls; ssetap re-initialized and went on")
        return None

    # Hooks from the transport -------------------------------------------------------------

    def _deliver(self, message: RpcMessage) -> None:
        kind = message.kind
        if kind == RESULT or kind == ERROR:
            call = self.by_key.get(message.id_key or "")
            if call is None:
                self.events["responses matching no live request"] += 1
            elif call.done.is_set():
                self.events["responses after the call was judged"] += 1
            else:
                call.response = message.payload
                call.received_at = self._loop.time()
                self._finish(call)
        elif kind == NOTIFICATION:
            if message.method == "notifications/progress":
                params = message.payload.get("params") or {}
                call = self.by_token.get(id_key(params.get("progressToken")))
                if call is not None and not call.done.is_set():
                    call.progress.append({k: v for k, v in params.items()
                                          if k not in ("progressToken", "_meta")})
        elif kind == REQUEST:
            task = asyncio.create_task(self._answer(message))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)

    async def _answer(self, message: RpcMessage) -> None:
        """Answer a live server request as the recorded client did, under the live id."""
        payload = message.payload
        method = message.method or ""
        candidate = self.matcher.match(method, payload.get("params"), loose=True)
        delay = 0.0
        if candidate is not None:
            body = candidate.value.response
            delay = self.options.timing.scaled(candidate.value.delay) or 0.0
            self.events[f"server requests answered from the recording ({method})"] += 1
        elif method == "ping":
            body = {"result": {}}
        else:
            body = {"error": {"code": -32601,
                              "message": f"ssetap replay: the recording has no answer to {method}"}}
            self.events[f"server requests with no recorded answer ({method})"] += 1
        if delay:
            await asyncio.sleep(delay)
        if self.channel is not None:
            await self.channel.send({"jsonrpc": "2.0", "id": payload.get("id"), **body}, None)

    def _failed(self, key: str | None, description: str) -> None:
        call = self.by_key.get(key) if key else None
        if call is not None:
            self._finish(call, failure=description)
        else:
            self.events[f"messages the target refused ({description[:60]})"] += 1

    def _stream_ended(self, key: str) -> None:
        call = self.by_key.get(key)
        if call is None or call.done.is_set():
            return
        self._loop.call_later(STREAM_END_GRACE, lambda: self._finish(
            call, missing="the response stream closed before the response"))

    def _closed(self, reason: str) -> None:
        self.fatal = reason
        for call in list(self.calls.values()):
            if call.expects_response:
                self._finish(call, missing=reason)

    def _is_pending(self, key: str) -> bool:
        call = self.by_key.get(key)
        return call is not None and not call.done.is_set()


def _http_client() -> httpx.AsyncClient:
    # No read timeout: SSE streams may idle; every call has its own deadline instead.
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None),
                             limits=httpx.Limits(max_connections=200,
                                                 max_keepalive_connections=50))


async def replay_plans(plans: Sequence[Plan], target: str, options: ReplayOptions = DEFAULT_REPLAY,
                       on_result: ResultCallback | None = None) -> ReplayResult:
    """Replay plans one session after another against `target`."""
    sessions = []
    async with _http_client() as http:
        for plan in plans:
            session = SessionReplay(plan, target, http, options, on_result)
            sessions.append(await session.run())
    capture = plans[0].capture if plans else ""
    return ReplayResult(capture, target, tuple(sessions), str(options.timing))


async def replay_async(capture: str | os.PathLike[str], target: str, *,
                       session: str | None = None, options: ReplayOptions = DEFAULT_REPLAY,
                       on_result: ResultCallback | None = None) -> ReplayResult:
    """Load a capture, plan it and replay it against `target` (an MCP endpoint URL).

    Raises StoreError / RecordingError for a bad capture and TargetError when the target
    cannot be reached.
    """
    recordings = load_recordings(capture, session)
    plans = [build_plan(r, only=options.only, skip=options.skip) for r in recordings]
    return await replay_plans(plans, target, options, on_result)


def replay(capture: str | os.PathLike[str], target: str, **kwargs: Any) -> ReplayResult:
    """Synchronous `replay_async` (runs its own event loop)."""
    return asyncio.run(replay_async(capture, target, **kwargs))
