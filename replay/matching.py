"""Match live requests to recorded ones by method and normalised params (never by id or bytes).

Used twice: the mock answers a client's request with the recorded answer to the same request,
and replay answers a live server's own requests (sampling, elicitation, roots) with the answer
the recorded client gave. Normalising drops `_meta` at any depth (progress tokens, trace
context), and key order never matters. Identical recorded requests are consumed in recorded
order, so a tool called twice with the same arguments answers as it did the first time and
then the second; once they are used up, the last answer repeats.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from replay.diff import DiffOptions, diff

T = TypeVar("T")

_STRICT = DiffOptions(rules=(), volatile_values=False, max_differences=1000)


def normalise(value: Any) -> Any:
    """`value` without `_meta` members at any depth."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if k != "_meta"}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def params_key(method: str, params: Any) -> str:
    """A canonical text for (method, normalised params): equal requests give equal keys.

    Absent params and `{}` are the same request (SDKs differ in which they send)."""
    body = orjson.dumps(normalise(params) if params is not None else {},
                        option=orjson.OPT_SORT_KEYS).decode()
    return f"{method}\0{body}"


@dataclass(frozen=True, slots=True)
class Candidate(Generic[T]):
    """A recorded request and what to answer it with."""

    method: str
    params: Any
    value: T

    def describe(self, limit: int = 200) -> str:
        """`tools/call {"name":"echo",...}` for error messages, shortened to `limit`."""
        if self.params is None:
            return self.method
        text = orjson.dumps(normalise(self.params)).decode()
        if len(text) > limit:
            text = text[: limit - 3] + "..."
        return f"{self.method} {text}"


class MatchIndex(Generic[T]):
    """Recorded requests, indexed once; `matcher()` gives per-session consumption state."""

    def __init__(self, candidates: Sequence[Candidate[T]]) -> None:
        self.candidates = tuple(candidates)
        self.by_key: dict[str, list[int]] = {}
        self.by_method: dict[str, list[int]] = {}
        for index, candidate in enumerate(self.candidates):
            self.by_key.setdefault(params_key(candidate.method, candidate.params), []).append(index)
            self.by_method.setdefault(candidate.method, []).append(index)

    def matcher(self) -> Matcher[T]:
        return Matcher(self)


class Matcher(Generic[T]):
    """One live session's view of a MatchIndex: which recorded answers it has used."""

    def __init__(self, index: MatchIndex[T]) -> None:
        self.index = index
        self._used: dict[str, int] = {}

    def _take(self, bucket_name: str, bucket: list[int]) -> Candidate[T]:
        used = self._used.get(bucket_name, 0)
        self._used[bucket_name] = used + 1
        return self.index.candidates[bucket[min(used, len(bucket) - 1)]]

    def match(self, method: str, params: Any, *, loose: bool = False) -> Candidate[T] | None:
        """The recorded request equal to this one; with `loose`, else the next of its method."""
        key = params_key(method, params)
        bucket = self.index.by_key.get(key)
        if bucket:
            return self._take(key, bucket)
        if loose:
            same = self.index.by_method.get(method)
            if same:
                return self._take("\0method\0" + method, same)
        return None

    def closest(self, method: str, params: Any) -> Candidate[T] | None:
        """The recorded request most like this one: same method and fewest differing values,
        else the most similarly named method."""
        same = self.index.by_method.get(method)
        if not same:
            names = difflib.get_close_matches(method, list(self.index.by_method), n=1, cutoff=0)
            if not names:
                return None
            return self.index.candidates[self.index.by_method[names[0]][0]]
        wanted = normalise(params)
        best = min(same, key=lambda i: len(diff(normalise(self.index.candidates[i].params),
                                                 wanted, options=_STRICT)))
        return self.index.candidates[best]
