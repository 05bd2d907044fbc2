"""Judge one replayed call: the live outcome against the recorded expectation (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from replay.diff import DEFAULT_OPTIONS, DiffOptions, diff
from replay.plan import Step
from replay.results import DIFFERS, ERROR, MATCH, MISSING, SLOW, CallResult


class LatencyError(Exception):
    """A --latency-threshold value that cannot be read."""


@dataclass(frozen=True, slots=True)
class LatencyLimit:
    """A call regressed when it is slower than recorded by both `ratio` and `extra_ms`.

    Needing both keeps fast calls from flapping on jitter (2 ms -> 5 ms is 2.5x but nothing)
    and slow calls from hiding a big absolute jump behind a small ratio. None disables a side;
    both None disables the check.
    """

    ratio: float | None = 2.0
    extra_ms: float | None = 250.0

    def exceeded(self, recorded_ms: float | None, live_ms: float | None) -> bool:
        if recorded_ms is None or live_ms is None or (self.ratio is None and self.extra_ms is None):
            return False
        if self.ratio is not None and live_ms <= recorded_ms * self.ratio:
            return False
        return self.extra_ms is None or live_ms - recorded_ms > self.extra_ms

    def __str__(self) -> str:
        parts = []
        if self.ratio is not None:
            parts.append(f"{self.ratio:g}x")
        if self.extra_ms is not None:
            parts.append(f"+{self.extra_ms:g} ms")
        return " and ".join(parts) or "off"


DEFAULT_LATENCY: Final = LatencyLimit()

_DURATION = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*(ms|s)$")
_RATIO = re.compile(r"^(\d+(?:\.\d+)?)\s*(x|%)$")


def parse_latency_limit(text: str) -> LatencyLimit:
    """`2x`, `150%`, `250ms`, `1.5s`, `2x+250ms` (both must be exceeded), or `off`."""
    value = text.strip().lower().replace(" ", "")
    if value in ("off", "none", "0"):
        return LatencyLimit(None, None)
    ratio: float | None = None
    extra: float | None = None
    for part in filter(None, re.split(r"[+,]", value)):
        if m := _RATIO.match(part):
            ratio = float(m.group(1)) / (100 if m.group(2) == "%" else 1)
        elif m := _DURATION.match(part):
            extra = float(m.group(1)) * (1000 if m.group(2) == "s" else 1)
        else:
            raise LatencyError(f"--latency-threshold takes e.g. 2x, 250ms or 2x+250ms, not {text!r}")
    if ratio is None and extra is None:
        raise LatencyError(f"--latency-threshold takes e.g. 2x, 250ms or 2x+250ms, not {text!r}")
    return LatencyLimit(ratio, extra)


@dataclass(frozen=True, slots=True)
class LiveOutcome:
    """What happened to a request on the live server.

    `response` is the live JSON-RPC response object, None when none came; `failure`
    describes an HTTP or transport failure; `missing` explains a missing response.
    """

    response: dict[str, Any] | None = None
    latency_ms: float | None = None
    progress: tuple[Any, ...] = ()
    failure: str | None = None
    missing: str | None = None


def _tool_error_text(result: Any) -> str | None:
    """The text of a tool result flagged `isError`, else None."""
    if not isinstance(result, dict) or result.get("isError") is not True:
        return None
    texts = [c.get("text", "") for c in result.get("content") or []
             if isinstance(c, dict) and c.get("type") == "text"]
    return " ".join(t for t in texts if t) or "isError without text"


def recorded_id(step: Step) -> str | None:
    """The step's recorded id as `ssetap show` prints it (JSON text); None for synthetic ones."""
    if step.synthetic or "id" not in step.payload:
        return None
    return orjson.dumps(step.payload["id"]).decode()


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge(step: Step, live: LiveOutcome, *, options: DiffOptions = DEFAULT_OPTIONS,
          latency: LatencyLimit = DEFAULT_LATENCY, fail_on_slow: bool = False) -> CallResult:
    """The verdict on one replayed request (see CallResult for the statuses).

    Latency is reported (`slow`), and only fails the call (status slow) with `fail_on_slow`:
    one sample of a jittery server's latency is noise, and a gate that flips on noise is
    worse than none. The engine re-measures a call that looks slow before that verdict.
    """
    expected = step.expectation
    recorded_ms = expected.latency_ms if expected else None

    def result(status: str, *, differences: tuple[Any, ...] = (), detail: str | None = None,
               slow: bool = False) -> CallResult:
        return CallResult(step.ordinal or 0, step.method, step.name, status, live.latency_ms,
                          recorded_ms, differences, detail, slow, recorded_id(step))

    if live.failure is not None:
        return result(ERROR, detail=live.failure)
    if expected is None or expected.response is None:
        why = "cancelled" if expected and expected.cancelled else "unanswered when recording stopped"
        return result(MATCH, detail=f"recorded without a response ({why}); not compared")
    if live.response is None:
        return result(MISSING, detail=live.missing or "no response")

    actual: dict[str, Any]
    if "error" in live.response:
        actual = {"error": live.response.get("error")}
        if "result" in expected.response:
            error = actual["error"] if isinstance(actual["error"], dict) else {}
            return result(ERROR, detail=f"JSON-RPC error {error.get('code')}: "
                                        f"{_short(error.get('message'))}")
    else:
        actual = {"result": live.response.get("result")}
        if step.method == "tools/call":
            text = _tool_error_text(actual["result"])
            if text is not None and _tool_error_text(expected.response.get("result")) is None:
                return result(ERROR, detail=f"tool error: {_short(text)}")

    wanted: dict[str, Any] = dict(expected.response)
    if expected.progress or live.progress:
        wanted["progress"] = list(expected.progress)
        actual["progress"] = list(live.progress)
    differences = tuple(diff(wanted, actual, options=options, method=step.method, name=step.name))
    slow = latency.exceeded(recorded_ms, live.latency_ms)
    if differences:
        return result(DIFFERS, differences=differences, slow=slow)
    if slow and fail_on_slow:
        return result(SLOW, detail=f"slower than recorded by more than {latency}", slow=True)
    if slow:
        return result(MATCH, detail=f"slower than recorded by more than {latency} (reported, "
                                    "not failed: --fail-on-slow gates on latency)", slow=True)
    return result(MATCH)
