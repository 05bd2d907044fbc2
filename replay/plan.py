"""Turn a recorded session into a replay plan: what to send, in what order, when, and what to expect.

Design notes:
- Only the client's side is replayed. Each client request or notification becomes a `Step`;
  the client's answers to the server's own requests become `ServerAnswer`s, used when the
  live server asks the same thing.
- Causality, not clocks, orders the default replay. A step waits for exactly the responses
  the recorded client had received before it sent that message, so sequential clients replay
  sequentially and concurrent ones stay concurrent. Recorded timing, when asked for, is a
  lower bound added on top of causality.
- Ids are never taken from the capture. `IdMap` hands out fresh ids (same JSON type as the
  recorded one, never reused) and keeps both directions; progress tokens and the `requestId`
  of cancellations are rewritten through it. Session ids and Last-Event-ID are live-only
  values held by the engine's transports.
- Pure: Recording in, Plan out. `--only`/`--skip` filtering happens here, so a filtered-out
  request also drops its cancellation and everyone's wait on its response.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

from recorder.jsonrpc import id_key
from recorder.model import C2S, ERROR, NOTIFICATION, REQUEST, RESULT, S2C
from replay.matching import Candidate, MatchIndex
from replay.recorded import RecordedMessage, RecordedSession, Recording

# Sent whatever the filters say: without them there is no session to replay into.
HANDSHAKE = frozenset({"initialize", "notifications/initialized"})

DEFAULT_PROTOCOL_VERSION = "2025-06-18"


class PlanError(Exception):
    """A plan option that cannot be understood (a bad --timing value)."""


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the recorded server answered to a request.

    `response` is `{"result": ...}` or `{"error": ...}`, None when the recording has no answer
    (the request was cancelled, or still pending when recording stopped).
    """

    response: dict[str, Any] | None
    latency_ms: float | None
    progress: tuple[Any, ...] = ()
    cancelled: bool = False

    @property
    def kind(self) -> str:
        if self.response is None:
            return "none"
        return ERROR if "error" in self.response else RESULT


@dataclass(frozen=True, slots=True)
class Step:
    """One client message to send.

    `t` is seconds since the session's first client message. `waits_for` holds indexes of
    earlier request steps whose responses the recorded client had before sending this.
    `ordinal` numbers requests 1, 2, ... in recorded order (stable under --only/--skip).
    """

    index: int
    kind: str
    method: str
    payload: dict[str, Any]
    t: float
    waits_for: tuple[int, ...] = ()
    ordinal: int | None = None
    name: str | None = None
    progress_token: Any = None
    cancels: int | None = None
    expectation: Expectation | None = None
    synthetic: bool = False

    @property
    def is_request(self) -> bool:
        return self.kind == REQUEST

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}" if self.name else self.method


@dataclass(frozen=True, slots=True)
class ServerAnswer:
    """The recorded client's answer to a server request, and how long it took to give it."""

    response: dict[str, Any]
    delay: float


@dataclass(frozen=True, slots=True)
class Plan:
    """A recorded session, ready to run against a live server."""

    capture: str
    session: RecordedSession
    steps: tuple[Step, ...]
    answers: MatchIndex[ServerAnswer]
    notes: tuple[str, ...] = ()
    skipped: int = 0

    @property
    def requests(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.is_request and not s.synthetic)


# --- Timing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """Pacing: `speed` None = as fast as causality allows; 1 = recorded; N = N times faster."""

    speed: float | None = None

    def scaled(self, recorded_seconds: float) -> float | None:
        """When (seconds from the start) a recorded offset falls; None when not paced."""
        if self.speed is None:
            return None
        return max(recorded_seconds, 0.0) / self.speed

    def __str__(self) -> str:
        if self.speed is None:
            return "fast"
        return "recorded" if self.speed == 1 else f"x{self.speed:g}"


FAST: Final = Timing(None)
RECORDED: Final = Timing(1.0)

_SPEED = re.compile(r"^(?:x\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*x)$")


def parse_timing(text: str) -> Timing:
    """`fast`, `recorded`, or `xN` / `Nx` (N times faster than recorded; x0.5 is half speed)."""
    value = text.strip().lower()
    if value == "fast":
        return Timing(None)
    if value == "recorded":
        return Timing(1.0)
    match = _SPEED.match(value)
    if match:
        speed = float(match.group(1) or match.group(2))
        if speed > 0:
            return Timing(speed)
    raise PlanError(f"--timing takes fast, recorded or xN (N times faster), not {text!r}")


# --- Ids ------------------------------------------------------------------------------------


class IdMap:
    """Fresh request ids for a live session, never reused, with both directions mapped.

    A recorded integer id gets a live integer, a string id a live string, so servers that care
    about the id's type see what the recorded client sent.
    """

    def __init__(self, start: int = 1) -> None:
        self._next = start
        self._to_live: dict[str, Any] = {}
        self._to_recorded: dict[str, Any] = {}

    def fresh(self, recorded: Any) -> Any:
        number = self._next
        self._next += 1
        live: Any = f"ssetap-{number}" if isinstance(recorded, str) else number
        self._to_live[id_key(recorded)] = live
        self._to_recorded[id_key(live)] = recorded
        return live

    def live_for(self, recorded: Any) -> Any | None:
        """The live id most recently given to a recorded id."""
        return self._to_live.get(id_key(recorded))

    def recorded_for(self, live: Any) -> Any | None:
        return self._to_recorded.get(id_key(live))


def live_message(step: Step, live_id: Any = None, *, progress_token: Any = None,
                 cancel_id: Any = None) -> dict[str, Any]:
    """The step's recorded message with live values put in, copying only what changes."""
    message = dict(step.payload)
    if step.is_request:
        message["id"] = live_id
    params = message.get("params")
    if step.progress_token is not None and isinstance(params, dict):
        meta = dict(params.get("_meta") or {})
        meta["progressToken"] = progress_token
        message["params"] = {**params, "_meta": meta}
    elif cancel_id is not None and isinstance(params, dict):
        message["params"] = {**params, "requestId": cancel_id}
    return message


# --- Building -------------------------------------------------------------------------------


def _selected(method: str, name: str | None, only: Sequence[str], skip: Sequence[str]) -> bool:
    if method in HANDSHAKE:
        return True
    subjects = [method] + ([f"{method}:{name}"] if name else [])

    def hit(patterns: Sequence[str]) -> bool:
        return any(fnmatchcase(s, p) for p in patterns for s in subjects)

    if only and not hit(only):
        return False
    return not (skip and hit(skip))


def _name(method: str, params: Any) -> str | None:
    if not isinstance(params, dict):
        return None
    if method in ("tools/call", "prompts/get"):
        value = params.get("name")
    elif method.startswith("resources/"):
        value = params.get("uri")
    else:
        return None
    return value if isinstance(value, str) else None


def response_body(message: RecordedMessage | None) -> dict[str, Any] | None:
    """What of a recorded answer is compared: `{"result": ...}` or `{"error": ...}`."""
    if message is None or not isinstance(message.payload, dict):
        return None
    if message.kind == RESULT:
        return {"result": message.payload.get("result")}
    if message.kind == ERROR:
        return {"error": message.payload.get("error")}
    return None


def _progress_params(message: RecordedMessage) -> Any:
    params = message.payload.get("params") if isinstance(message.payload, dict) else None
    if isinstance(params, dict):
        return {k: v for k, v in params.items() if k not in ("progressToken", "_meta")}
    return params


def _sessionless(payload: dict[str, Any]) -> bool:
    """A 2026-07-28 message: no handshake, every request carries its protocol version."""
    if payload.get("method") == "server/discover":
        return True
    params = payload.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and any(k.endswith("/protocolVersion") for k in meta)


def _synthetic_handshake(session: RecordedSession) -> list[dict[str, Any]]:
    version = session.protocol_version or DEFAULT_PROTOCOL_VERSION
    return [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize",
         "params": {"protocolVersion": version, "capabilities": {},
                    "clientInfo": {"name": "ssetap-replay", "version": "0.1.0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]


@dataclass
class _Builder:
    recording: Recording
    only: Sequence[str]
    skip: Sequence[str]
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: int = 0

    def build(self) -> Plan:
        rec = self.recording
        messages = rec.messages
        by_id = {m.id: m for m in messages}
        calls = {c.id: c for c in rec.calls}
        progress: dict[int, list[Any]] = {}
        for m in messages:
            if (m.direction == S2C and m.kind == NOTIFICATION and m.call_id is not None
                    and m.method == "notifications/progress"):
                progress.setdefault(m.call_id, []).append(_progress_params(m))

        client = [m for m in messages if m.direction == C2S and m.kind in (REQUEST, NOTIFICATION)
                  and isinstance(m.payload, dict) and m.method]
        t0 = min((m.t for m in client), default=rec.session.started_at)
        if not any(m.method == "initialize" for m in client if m.kind == REQUEST) \
                and not any(_sessionless(m.payload) for m in client):
            self.notes.append("the capture has no initialize; ssetap sent its own handshake")
            for payload in _synthetic_handshake(rec.session):
                kind = REQUEST if "id" in payload else NOTIFICATION
                self.steps.append(Step(len(self.steps), kind, payload["method"], payload, 0.0,
                                       synthetic=True,
                                       expectation=Expectation(None, None) if kind == REQUEST
                                       else None))

        # Responses to client requests, in arrival order, to work out what each step waits for.
        responses = sorted(
            ((by_id[c.response_message_id].t, c.response_message_id, c.id)
             for c in calls.values()
             if c.direction == C2S and c.response_message_id in by_id),
        )
        step_of_call: dict[int, int] = {}
        step_of_rpc_id: dict[str, int] = {}
        pending_waits: list[int] = []  # call ids answered since the last kept step
        cursor = 0
        ordinal = 0
        for m in client:
            while cursor < len(responses) and (responses[cursor][0], responses[cursor][1]) < (m.t, m.id):
                pending_waits.append(responses[cursor][2])
                cursor += 1
            params = m.payload.get("params")
            name = _name(m.method or "", params)
            cancels = None
            if m.kind == REQUEST:
                ordinal += 1
            if m.method == "notifications/cancelled" and isinstance(params, dict):
                target = step_of_rpc_id.get(id_key(params.get("requestId")))
                if target is None:
                    self.notes.append(f"a cancellation of request {params.get('requestId')!r}, "
                                      "which is not replayed, was left out")
                    continue
                cancels = target
            if not _selected(m.method or "", name, self.only, self.skip):
                if m.kind == REQUEST:
                    self.skipped += 1
                continue
            index = len(self.steps)
            waits = tuple(sorted({step_of_call[c] for c in pending_waits if c in step_of_call}))
            pending_waits.clear()
            step = Step(index, m.kind, m.method or "", m.payload, round(m.t - t0, 6),
                        waits_for=waits, name=name, cancels=cancels)
            if m.kind == REQUEST:
                call = calls.get(m.call_id) if m.call_id is not None else None
                response = by_id.get(call.response_message_id) if call and \
                    call.response_message_id else None
                meta = params.get("_meta") if isinstance(params, dict) else None
                token = meta.get("progressToken") if isinstance(meta, dict) else None
                step = Step(
                    index, REQUEST, step.method, step.payload, step.t, waits, ordinal, name,
                    progress_token=token,
                    expectation=Expectation(
                        response_body(response),
                        call.latency_ms if call else None,
                        tuple(progress.get(call.id, ())) if call else (),
                        bool(call and call.cancelled_at is not None),
                    ),
                )
                if m.call_id is not None:
                    step_of_call[m.call_id] = index
                step_of_rpc_id[id_key(m.payload.get("id"))] = index
            self.steps.append(step)

        return Plan(rec.capture, rec.session, tuple(self.steps), self._answers(by_id),
                    tuple(self.notes), self.skipped)

    def _answers(self, by_id: dict[int, RecordedMessage]) -> MatchIndex[ServerAnswer]:
        candidates = []
        for call in self.recording.calls:
            if call.direction != S2C or call.request_message_id not in by_id:
                continue
            request = by_id[call.request_message_id]
            response = by_id.get(call.response_message_id) if call.response_message_id else None
            body = response_body(response)
            if body is None or response is None or not isinstance(request.payload, dict):
                continue
            candidates.append(Candidate(call.method, request.payload.get("params"),
                                        ServerAnswer(body, max(response.t - request.t, 0.0))))
        return MatchIndex(candidates)


def build_plan(recording: Recording, *, only: Sequence[str] = (),
               skip: Sequence[str] = ()) -> Plan:
    """The replay plan of one recorded session (see the module notes)."""
    return _Builder(recording, only, skip).build()
