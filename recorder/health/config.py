"""The thresholds of every check (`HealthConfig`) and how options and durations are read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

# Known idle or absolute deadlines in the path, and who usually sets them (failure-modes.md 1.2).
KNOWN_TIMEOUTS: dict[float, str] = {
    15.0: "Envoy's route timeout",
    30.0: "a 30 s client or gateway timeout",
    55.0: "a 55 s gateway timeout",
    60.0: "nginx proxy_read_timeout or an AWS ALB idle timeout",
    90.0: "a 90 s proxy timeout",
    100.0: "Cloudflare's proxy read timeout",
    120.0: "a 120 s proxy timeout",
    300.0: "undici's bodyTimeout, Node's requestTimeout or python-sdk's sse_read_timeout",
    600.0: "a 10 min gateway limit",
    900.0: "a 15 min gateway limit",
    3600.0: "Envoy's connection idle_timeout",
}

class HealthConfigError(ValueError):
    """A threshold or option that cannot be understood."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Every threshold of the checks. Durations are seconds; 0 disables a deadline."""

    # heartbeat-missing: cadence learned per stream, else this fallback interval.
    heartbeat_interval: float = 15.0
    heartbeat_factor: float = 2.5  # quiet longer than factor x cadence ...
    heartbeat_slack: float = 1.0  # ... and longer than cadence + slack (jitter on fast cadences)
    # request-timeout: default deadline and per-method overrides (0 = no deadline).
    request_timeout: float = 60.0
    method_timeouts: tuple[tuple[str, float], ...] = (
        ("elicitation/create", 0.0),  # waits on a person
        ("sampling/createMessage", 0.0),  # waits on a model and often a person
        ("tasks/result", 0.0),  # blocks until the task ends, by design
    )
    # request-cancelled: how long to wait for an answer to a cancelled call before reporting.
    cancel_grace: float = 2.0
    # reconnect-storm.
    storm_window: float = 60.0
    storm_count: int = 10  # reconnects within the window
    storm_no_backoff: int = 5  # consecutive reconnects whose delays never grow
    storm_short_lived: float = 10.0  # a stream that lived less than this and ended: a failure
    # idle-timeout-close.
    idle_timeouts: tuple[float, ...] = tuple(KNOWN_TIMEOUTS)
    idle_tolerance: float = 0.02  # fraction of the constant ...
    idle_tolerance_max: float = 1.0  # ... capped at this many seconds
    idle_recur_count: int = 3  # closes at one value that make it "a value that recurs"
    idle_recur_min: float = 5.0  # recurring values shorter than this are not deadlines
    # buffered-stream.
    burst_events: int = 5  # SSE events and comments in one burst ...
    burst_gap: float = 2.0  # ... right after at least this much silence ...
    burst_gap_factor: float = 3.0  # ... and this many times the stream's median gap
    burst_window: float = 0.005  # chunks closer than this form one burst
    # stream-truncated: how long a stream that issued event ids may take to be resumed.
    resume_grace: float = 5.0
    # session-not-found: how long a client may take to re-initialize after a 404.
    session_recover_grace: float = 10.0
    # plaintext-remote, missing-auth: hosts ("host" or "host:port") to treat as remote though
    # they are loopback, e.g. the local end of an SSH tunnel or `kubectl port-forward`.
    remote_hosts: tuple[str, ...] = ()
    # Offline only: tick spacing used to replay the passing of time across silences.
    tick_interval: float = 0.5

    def timeout_for(self, method: str) -> float:
        for name, seconds in self.method_timeouts:
            if name == method:
                return seconds
        return self.request_timeout

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "method_timeouts":
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: str | float) -> float:
    """Seconds from `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds."""
    if isinstance(value, bool):
        raise HealthConfigError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise HealthConfigError(f"not a duration: {value!r} (use e.g. 30s, 500ms, 2m)")
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _UNITS[unit]
    if seconds < 0:
        raise HealthConfigError(f"a duration cannot be negative: {value!r}")
    return seconds


_DURATION_FIELDS = frozenset({
    "heartbeat_interval", "heartbeat_slack", "request_timeout", "cancel_grace", "storm_window",
    "storm_short_lived", "idle_tolerance_max", "idle_recur_min", "burst_gap", "burst_window",
    "resume_grace", "session_recover_grace", "tick_interval",
})


def config_from_mapping(data: Mapping[str, Any], base: HealthConfig | None = None) -> HealthConfig:
    """A config from JSON-like options (durations may be strings like "30s")."""
    config = base or HealthConfig()
    known = {f.name for f in fields(HealthConfig)}
    changes: dict[str, Any] = {}
    for name, value in data.items():
        key = name.replace("-", "_")
        if key not in known:
            raise HealthConfigError(f"unknown check option {name!r}")
        try:
            if key in _DURATION_FIELDS:
                changes[key] = parse_duration(value)
            elif key == "method_timeouts":
                if not isinstance(value, Mapping):
                    raise HealthConfigError("method_timeouts needs an object of method: duration")
                merged = dict(config.method_timeouts)
                merged.update({str(k): parse_duration(v) for k, v in value.items()})
                changes[key] = tuple(merged.items())
            elif key == "idle_timeouts":
                if not isinstance(value, list | tuple):
                    raise HealthConfigError("idle_timeouts needs a list of durations")
                changes[key] = tuple(sorted(parse_duration(v) for v in value))
            elif key == "remote_hosts":
                if not isinstance(value, list | tuple) \
                        or not all(isinstance(v, str) for v in value):
                    raise HealthConfigError("remote_hosts needs a list of host or host:port")
                changes[key] = tuple(v.lower() for v in value)
            elif key in ("storm_count", "storm_no_backoff", "idle_recur_count", "burst_events"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise HealthConfigError(f"{name} needs a positive integer")
                changes[key] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise HealthConfigError(f"{name} needs a non-negative number")
                changes[key] = float(value)
        except HealthConfigError as exc:
            if str(exc).startswith(name) or "unknown" in str(exc):
                raise
            raise HealthConfigError(f"{name}: {exc}") from None
    return replace(config, **changes)


# --- Small helpers ----------------------------------------------------------------------------
