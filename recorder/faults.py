"""Fault injection, the pure core: the `--fault` grammar, its validation, and what to do when.

Shared by the recording proxy (`recorder/fault_addon.py`) and the mock (`replay/mock_faults.py`),
so a spec means the same thing everywhere. The stream side (what a spec does to SSE bytes)
is `recorder.fault_stream`.
"""

# Design notes: the rules this module keeps, and why.
# - Sans-IO. Specs are parsed into frozen values; a `FaultPlan` answers "what happens to this
#   request, this stream, now?" with the clock passed in; a `StreamFilter` turns the bytes a
#   server wrote into the bytes the client gets. The shells own sockets, timers and closing.
# - One table. `FAULT_KINDS` holds every kind with its grammar, where it acts and the flags
#   `ssetap check` must then raise; the parser, `check`'s injected-marking and the README table
#   are driven by it (tests hold them together).
# - Every change is an `Injection`: which spec, what was done, when, with details. The shells
#   record them (the proxy into the capture), so a capture tells injected faults from natural
#   ones.
# - Streams are changed on SSE block boundaries only when a stream fault applies: the filter
#   keeps an incomplete block until its blank line (or the end), so a dropped comment or a
#   stripped `id:` line never splits an event (recorder.fault_stream). Without `--fault` no
#   filter is made and bytes pass untouched.
# - Schedule: a fault is on once `after` seconds have passed since its session was first seen;
#   with `every`, it is then on for `every` seconds, off for `every`, and so on; `sessions`
#   limits it to the first N sessions (in the order they were first seen).

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any, Final

import orjson

from recorder.model import Flag

# Where a kind acts.
STREAM: Final = "stream"  # on the bytes of SSE response streams
REQUEST: Final = "request"  # on matching JSON-RPC requests
SESSION: Final = "session"  # on every request of a session


class FaultSpecError(ValueError):
    """A `--fault` spec (or schedule option) that cannot be understood."""


@dataclass(frozen=True, slots=True)
class FaultKind:
    """One row of the fault table."""

    name: str
    grammar: str  # what follows `name`, as shown in the README ("" when none)
    scope: str
    flags: tuple[str, ...]  # flag kinds `ssetap check` must raise (first: the main one)
    summary: str


FAULT_KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("drop-heartbeats", "", STREAM, ("heartbeat-missing",),
              "SSE comments (heartbeats) removed from streams"),
    FaultKind("buffer", "=DURATION", STREAM, ("buffered-stream",),
              "stream bytes held and released in bursts every DURATION"),
    FaultKind("idle-cut", "=DURATION", STREAM, ("idle-timeout-close",),
              "a stream with no bytes for DURATION is closed"),
    FaultKind("cut-stream", "=N", STREAM, ("stream-truncated", "resume-gap"),
              "every response stream closed after N events"),
    FaultKind("strip-event-ids", "", STREAM, ("resume-gap",),
              "`id:` lines removed, so resumption cannot work"),
    FaultKind("session-lost", "=DURATION", SESSION, ("session-not-found", "reinit-missing"),
              "after DURATION, the session's requests get 404"),
    FaultKind("delay", "=METHOD[:NAME]:DURATION", REQUEST, ("request-timeout",),
              "matching requests held back by DURATION"),
    FaultKind("hang", "=METHOD[:NAME]", REQUEST, ("request-timeout",),
              "matching requests never answered"),
    FaultKind("error", "=METHOD[:NAME]:CODE", REQUEST, ("error-response",),
              "matching requests answered with a JSON-RPC error CODE"),
)}

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str) -> float:
    """Seconds from `500ms`, `2s`, `1.5m`, `1h` or a bare number of seconds (> 0)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise FaultSpecError(f"{what}: not a duration: {text!r} (e.g. 500ms, 2s, 1m)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise FaultSpecError(f"{what}: the duration must be more than 0: {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One parsed `--fault` spec; `text` is the spec as given, for the record."""

    kind: str
    text: str
    seconds: float | None = None  # buffer, idle-cut, session-lost, delay
    count: int | None = None  # cut-stream
    method: str | None = None  # delay, hang, error: a glob
    name: str | None = None  # ... and a glob on the tool/prompt name or resource URI
    code: int | None = None  # error

    @property
    def scope(self) -> str:
        return FAULT_KINDS[self.kind].scope

    def matches(self, method: str | None, name: str | None) -> bool:
        """Does a request (method, tool/prompt name or resource URI) fall under this spec?"""
        if self.method is None or method is None or not fnmatchcase(method, self.method):
            return False
        return self.name is None or (name is not None and fnmatchcase(name, self.name))


def _target(text: str, spec: str) -> tuple[str, str | None]:
    method, _, name = text.partition(":")
    if not method:
        raise FaultSpecError(f"--fault {spec}: METHOD is missing (e.g. tools/call or 'tools/*')")
    return method, (name or None)


def parse_fault(text: str) -> FaultSpec:
    """Parse one spec like `cut-stream=3` or `error=tools/call:echo:-32603`."""
    spec = text.strip()
    kind, eq, arg = spec.partition("=")
    known = FAULT_KINDS.get(kind)
    if known is None:
        raise FaultSpecError(f"--fault {spec}: unknown fault {kind!r} (known: "
                             f"{', '.join(FAULT_KINDS)})")
    if not known.grammar:
        if eq:
            raise FaultSpecError(f"--fault {spec}: {kind} takes no value")
        return FaultSpec(kind, spec)
    if not arg:
        raise FaultSpecError(f"--fault {spec}: {kind} needs a value: {kind}{known.grammar}")
    what = f"--fault {spec}"
    if kind == "cut-stream":
        if not arg.isdigit() or int(arg) < 1:
            raise FaultSpecError(f"{what}: N must be a whole number of events, 1 or more")
        return FaultSpec(kind, spec, count=int(arg))
    if kind in ("buffer", "idle-cut", "session-lost"):
        return FaultSpec(kind, spec, seconds=parse_duration(arg, what))
    if kind == "hang":
        method, name = _target(arg, spec)
        return FaultSpec(kind, spec, method=method, name=name)
    head, sep, last = arg.rpartition(":")
    if not sep:
        raise FaultSpecError(f"{what}: expected {kind}{known.grammar}")
    method, name = _target(head, spec)
    if kind == "delay":
        return FaultSpec(kind, spec, seconds=parse_duration(last, what), method=method,
                         name=name)
    try:
        code = int(last)
    except ValueError:
        raise FaultSpecError(f"{what}: CODE must be an integer, like -32603") from None
    return FaultSpec(kind, spec, method=method, name=name, code=code)


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """When faults are on: `after` seconds into a session, on/off every `every`, first N sessions."""

    after: float = 0.0
    every: float | None = None
    sessions: int | None = None

    def on(self, elapsed: float) -> bool:
        if elapsed < self.after:
            return False
        if self.every is None:
            return True
        return int((elapsed - self.after) // self.every) % 2 == 0


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Every spec with its schedule: what `--fault`, `--fault-after`, ... amount to."""

    specs: tuple[FaultSpec, ...]
    schedule: FaultSchedule = FaultSchedule()

    def to_json(self) -> str:
        return orjson.dumps({"specs": [s.text for s in self.specs], "after": self.schedule.after,
                             "every": self.schedule.every,
                             "sessions": self.schedule.sessions}).decode()

    @classmethod
    def from_json(cls, text: str) -> FaultConfig:
        data = orjson.loads(text) if text.strip() else {}
        return fault_config(data.get("specs", ()), after=data.get("after"),
                            every=data.get("every"), sessions=data.get("sessions"))


def idle_cut_seconds(specs: Iterable[FaultSpec]) -> tuple[float, ...]:
    """The `idle-cut` durations: deadlines the idle-timeout-close check must know about."""
    return tuple(sorted({s.seconds for s in specs if s.kind == "idle-cut" and s.seconds}))


def fault_config(specs: Iterable[str], *, after: str | float | None = None,
                 every: str | float | None = None,
                 sessions: int | str | None = None) -> FaultConfig:
    """Validate specs and schedule options (strings as given on the command line, or numbers)."""

    def seconds(value: str | float | None, what: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, int | float):
            if value <= 0 and what != "--fault-after":
                raise FaultSpecError(f"{what} must be more than 0")
            return float(value)
        return parse_duration(value, what)

    parsed = tuple(parse_fault(s) for s in specs)
    if sessions is not None:
        try:
            sessions = int(sessions)
        except ValueError:
            raise FaultSpecError(f"--fault-sessions must be a whole number, got {sessions!r}") \
                from None
        if sessions < 1:
            raise FaultSpecError("--fault-sessions must be 1 or more")
    schedule = FaultSchedule(seconds(after, "--fault-after") or 0.0,
                             seconds(every, "--fault-every"), sessions)
    return FaultConfig(parsed, schedule)


@dataclass(frozen=True, slots=True)
class Injection:
    """One change made on purpose: which spec, what was done to what, when."""

    spec: str
    kind: str
    action: str  # e.g. "dropped-comment", "cut", "404", "hung", "error", "released"
    t: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestAction:
    """What to do with one HTTP request: answer 404, hold, never answer, or answer an error."""

    action: str  # "404", "delay", "hang", "error"
    spec: FaultSpec
    seconds: float | None = None
    id_value: Any = None  # the JSON-RPC id to answer under (error)
    code: int | None = None

    def injection(self, t: float, method: str | None, name: str | None) -> Injection:
        detail: dict[str, Any] = {"method": method, "name": name}
        if self.seconds is not None:
            detail["seconds"] = self.seconds
        if self.code is not None:
            detail["code"] = self.code
        if self.id_value is not None:
            detail["id"] = self.id_value
        return Injection(self.spec.text, self.spec.kind, self.action, t, detail)

    def error_body(self) -> bytes:
        """The JSON-RPC error that answers the request (error)."""
        return orjson.dumps({"jsonrpc": "2.0", "id": self.id_value, "error": {
            "code": self.code, "message": f"injected by ssetap --fault {self.spec.text}"}})


SESSION_NOT_FOUND_BODY: Final = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {
    "code": -32001, "message": "Session not found (injected by ssetap --fault session-lost)"}})


def request_target(body: bytes | None) -> tuple[str | None, str | None, Any]:
    """Method, name (tool/prompt name or resource URI) and id of a JSON-RPC request body."""
    if not body:
        return None, None, None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if isinstance(obj, list):  # a batch: the first request decides
        obj = next((o for o in obj if isinstance(o, dict) and "method" in o), None)
    if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
        return None, None, None
    params = obj.get("params")
    name = None
    if isinstance(params, dict):
        value = params.get("name", params.get("uri"))
        name = value if isinstance(value, str) else None
    return obj["method"], name, obj.get("id")


class FaultPlan:
    """Decides, per session and moment, which faults apply. One per proxy or mock."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._started: dict[str | None, float] = {}
        self._order: dict[str | None, int] = {}
        self._aliases: dict[str, str | None] = {}

    def __bool__(self) -> bool:
        return bool(self.config.specs)

    def _key(self, key: str | None) -> str | None:
        return self._aliases.get(key, key) if key is not None else None

    def alias(self, key: str, same_as: str | None) -> None:
        """`key` names the same session as `same_as` (legacy SSE learns its id late)."""
        if key != same_as:
            self._aliases[key] = self._key(same_as)

    def see(self, key: str | None, now: float) -> None:
        key = self._key(key)
        if key not in self._started:
            self._started[key] = now
            if key is not None:  # no session (yet): an `initialize`, or a stateless server
                self._order[key] = len(self._order)

    def active(self, key: str | None, now: float) -> bool:
        """Are faults on for this session now? (Sees the session if it is new.)"""
        self.see(key, now)
        key = self._key(key)
        limit = self.config.schedule.sessions
        # Requests without a session count with the session they may start: they get
        # faults while a new session would.
        order = self._order[key] if key is not None else len(self._order)
        if limit is not None and order >= limit:
            return False
        return self.config.schedule.on(now - self._started[key])

    def elapsed(self, key: str | None, now: float) -> float:
        self.see(key, now)
        return now - self._started[self._key(key)]

    def for_request(self, key: str | None, now: float, method: str | None, name: str | None,
                    id_value: Any) -> RequestAction | None:
        """The first spec that acts on this request, if faults are on."""
        if not self.active(key, now):
            return None
        for spec in self.config.specs:
            if spec.kind == "session-lost" and key is not None:
                assert spec.seconds is not None
                if self.elapsed(key, now) - self.config.schedule.after >= spec.seconds:
                    return RequestAction("404", spec)
            elif spec.scope == REQUEST and id_value is not None and spec.matches(method, name):
                if spec.kind == "delay":
                    return RequestAction("delay", spec, seconds=spec.seconds, id_value=id_value)
                if spec.kind == "hang":
                    return RequestAction("hang", spec, id_value=id_value)
                return RequestAction("error", spec, id_value=id_value, code=spec.code)
        return None

    def stream_specs(self) -> tuple[FaultSpec, ...]:
        return tuple(s for s in self.config.specs if s.scope == STREAM)



# How long after an injection a flag it caused may be raised: a deadline (request timeout,
# heartbeat cadence, recovery grace) has to pass first.
INJECTION_REACH: Final = 600.0


def mark_injected(flag: Flag, injections: Iterable[Mapping[str, Any]]) -> Flag:
    """The flag with `details.injected` when one of its session's injections caused it.

    An injection (a row of the capture's `injections` table: id, t, kind, spec, action,
    stream_id) caused a flag when its kind's table row names the flag's kind and it came at
    most 1 s after the flag (clocks of one process) and at most INJECTION_REACH before it,
    or touched the flag's own stream. Matching by subject and time keeps the detectors as
    they are: they need not know about faults.
    """
    for row in injections:
        kind = FAULT_KINDS.get(str(row.get("kind")))
        if kind is None or flag.kind not in kind.flags:
            continue
        t = float(row["t"])
        same_stream = flag.stream_id is not None and flag.stream_id == row.get("stream_id")
        if same_stream or t - 1.0 <= flag.t <= t + INJECTION_REACH:
            return replace(flag, details={**flag.details, "injected": {
                "spec": row.get("spec"), "action": row.get("action"),
                "injection": row.get("id")}})
    return flag


def is_injected(flag: Flag) -> bool:
    return bool(flag.details.get("injected"))


def injected_spec(details: str | bytes | Mapping[str, Any] | None) -> str | None:
    """The spec that caused a flag, from its `details` (a row's JSON text or a mapping)."""
    if isinstance(details, str | bytes):
        try:
            details = orjson.loads(details)
        except orjson.JSONDecodeError:
            return None
    injected = details.get("injected") if isinstance(details, Mapping) else None
    return str(injected.get("spec")) if isinstance(injected, Mapping) else None


def describe(injection: Injection) -> str:
    """One line for a console or a report."""
    detail = ", ".join(f"{k}={v}" for k, v in injection.detail.items() if v is not None)
    return f"injected {injection.action} ({injection.spec}){': ' + detail if detail else ''}"
