"""Live stream-health checks inside the recording process: flags to the capture and the console.

`observers_for(config_json)` is what recorder.worker passes to `run(observers_factory=...)`.
The JSON carries the `ssetap record` check options, e.g. `{"request_timeout": "30s"}`, and
may name a JSON file of further thresholds with `config_file` (`ssetap record --check-config`).
A bad option is reported in one line and the defaults are used: a typo in a threshold must
not stop a recording.

The config in force is stored in the capture's meta table (`health_config`), so `ssetap check`
re-checks with the same thresholds unless told otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

import orjson

from recorder.events import (
    ChunkSeen,
    Event,
    ExchangeEnded,
    InjectionMade,
    RequestSeen,
    ResponseSeen,
    SseSeen,
    StreamClosed,
    StreamOpened,
    Tick,
)
from recorder.faults import mark_injected
from recorder.health import (
    HealthConfig,
    HealthConfigError,
    HealthMonitor,
    config_from_mapping,
)
from recorder.health.spec.schema import validate_message
from recorder.ingest import Observer
from recorder.model import Flag
from recorder.store import StoreWriter

META_KEY = "health_config"

# Facts whose time is when the proxy saw them: how far behind they are processed is the
# recording process's backlog.
_TIMED_FACTS = frozenset({RequestSeen, ResponseSeen, StreamOpened, ChunkSeen, SseSeen,
                          StreamClosed, ExchangeEnded})


def load_config(config_json: str, *, base: HealthConfig | None = None) -> HealthConfig:
    """A HealthConfig from the worker's `--config` JSON (raises HealthConfigError)."""
    try:
        data = orjson.loads(config_json or "{}")
    except orjson.JSONDecodeError as exc:
        raise HealthConfigError(f"check options are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HealthConfigError("check options must be a JSON object")
    config = base or HealthConfig()
    data.pop("quiet", None)  # a console setting, not a threshold
    path = data.pop("config_file", None)
    if path:
        config = config_from_mapping(read_config_file(str(path)), config)
    return config_from_mapping(data, config)


def read_config_file(path: str) -> dict[str, Any]:
    """The JSON object in a check-config file (raises HealthConfigError)."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise HealthConfigError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise HealthConfigError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HealthConfigError(f"{path} must hold a JSON object of check options")
    return data


def flag_row(flag: Flag, *, source: str) -> dict[str, Any]:
    """A flag as a `flags` row, without its id."""
    return {
        "session_id": flag.session_id, "stream_id": flag.stream_id,
        "message_id": flag.message_id, "call_id": flag.call_id,
        "exchange_id": flag.exchange_id, "t": flag.t, "kind": flag.kind,
        "severity": flag.severity, "message": flag.message,
        "details": orjson.dumps(flag.details).decode() if flag.details else None,
        "source": source,
    }


def console_line(flag: Flag) -> str:
    injected = flag.details.get("injected")
    mark = f" [injected: {injected['spec']}]" if isinstance(injected, dict) else ""
    return f"ssetap: [{flag.severity}] {flag.kind}: {flag.message}{mark}"


class LiveChecks:
    """One observer: runs the detector and records and prints what it flags.

    Ticks come from the recording process's clock, facts carry the proxy's times. When the
    process falls behind (a burst of traffic, a busy machine), facts already seen by the
    proxy wait in the pipe, and a tick at "now" would call their stream silent. So each tick
    is moved back by the backlog measured on the last fact (shrinking as time passes without
    facts): a busy recorder flags a little later, never wrongly.
    """

    def __init__(self, writer: StoreWriter, config: HealthConfig,
                 console: TextIO | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.monitor = HealthMonitor(config, validate=validate_message)
        self.console = console if console is not None else sys.stderr
        self.clock = clock
        self.broken = False
        self._lag = 0.0
        self._lag_at = 0.0
        # `record --fault`: what was injected, by session, to mark the flags it causes.
        self._injections: dict[int | None, list[dict[str, Any]]] = {}

    def __call__(self, event: Event) -> None:
        if self.broken:
            return
        kind = type(event)
        if kind is InjectionMade:
            row: dict[str, Any] = dict(zip(InjectionMade._fields, cast(InjectionMade, event),
                                           strict=True))
            self._injections.setdefault(row["session_id"], []).append(row)
            return
        if kind is Tick:
            backlog = max(0.0, self._lag - (event.t - self._lag_at))
            if backlog:
                event = Tick(event.t - backlog)
        elif kind in _TIMED_FACTS:
            now = self.clock()
            lag = now - event.t
            self._lag, self._lag_at = (lag if lag > 0.0 else 0.0), now  # max(0.0, lag), no call
        try:
            flags = self.monitor.observe(event)
        except Exception as exc:
            self.broken = True
            print(f"ssetap: error: live checks stopped ({type(exc).__name__}: {exc}); recording "
                  "goes on, run `ssetap check` on the capture afterwards", file=self.console,
                  flush=True)
            return
        for flag in flags:
            if self._injections:
                flag = mark_injected(flag, self._injections.get(flag.session_id, ()))
            self.writer.insert("flags", {"id": self.writer.next_id("flags"),
                                         **flag_row(flag, source="live")})
            print(console_line(flag), file=self.console, flush=True)


def observers_for(config_json: str) -> Callable[[StoreWriter], list[Observer]]:
    """The worker's observer factory: live checks configured from `config_json`."""
    try:
        config = load_config(config_json)
    except HealthConfigError as exc:
        print(f"ssetap: error: {exc}; live checks use their defaults", file=sys.stderr,
              flush=True)
        config = HealthConfig()

    try:
        quiet = bool(orjson.loads(config_json or "{}").get("quiet"))
    except (orjson.JSONDecodeError, AttributeError):
        quiet = False

    def factory(writer: StoreWriter) -> list[Observer]:
        writer.set_meta(META_KEY, orjson.dumps(config.to_json()).decode())
        # `record --quiet`: flags are still stored, just not printed.
        return [LiveChecks(writer, config, console=open(os.devnull, "w") if quiet else None)]

    return factory
