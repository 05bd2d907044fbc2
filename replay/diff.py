"""Structural diff of JSON values, with ignore rules held as data.

Design notes:
- Paths are written the way the report prints them and the rules file accepts them, so a path
  copied from a report is a working rule: `$.result.content[0].text`,
  `$.result.tools[name=echo].description`, `$["key with spaces"]`.
- Set-like lists (tools by name, prompts by name, resources by uri, templates by uriTemplate,
  roots by uri) are compared as sets keyed by that field: a server that reorders its tools has
  not regressed, and a removed tool shows up as one clear `[name=add]` difference instead of a
  cascade of shifted indexes.
- Volatile values are ignored by default: keys that are volatile by nature (`_meta`,
  `progressToken`, session ids, timestamps) and string pairs that are both timestamps or both
  id-shaped (UUIDs, long hex). Both can be switched off; user rules add to them.
- Numbers compare by value (`1 == 1.0`), never bools with numbers.
- Pure: values in, `Difference`s out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final, Self

import recorder.json_paths as json_paths


class RulesError(Exception):
    """A rules file or path pattern that cannot be parsed; the message names the line."""


class _Missing:
    """Marks a value that is absent on one side (distinct from JSON null)."""

    _instance: Self | None = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# A path segment: an object key, a list index, or (field, value) for a keyed set member.
Segment = str | int | tuple[str, str]
Path = tuple[Segment, ...]

# List-valued keys compared as sets, and the field that identifies their members.
SET_KEYS: Final[dict[str, str]] = {
    "tools": "name",
    "prompts": "name",
    "resources": "uri",
    "resourceTemplates": "uriTemplate",
    "roots": "uri",
}


@dataclass(frozen=True, slots=True)
class Difference:
    """One place where the actual value departs from the expected one (MISSING = absent)."""

    path: str
    expected: Any
    actual: Any


# --- Paths ----------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_KEYED_VALUE_PLAIN = re.compile(r"^[^\]\"'=\[]+$")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_path(path: Sequence[Segment]) -> str:
    """`("result", "content", 0, "text")` -> `$.result.content[0].text`."""
    out = ["$"]
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif isinstance(segment, tuple):
            name, value = segment
            shown = value if _KEYED_VALUE_PLAIN.match(value) and value.strip() == value \
                else _quote(value)
            out.append(f"[{name}={shown}]")
        elif _IDENTIFIER.match(segment):
            out.append(f".{segment}")
        else:
            out.append(f"[{_quote(segment)}]")
    return "".join(out)


# --- Patterns -------------------------------------------------------------------------------

# The path grammar is recorder.json_paths' (the recorder's `--redact-path` reads the same
# paths); here its errors are rules errors.
_Token = json_paths.Token


def parse_pattern(text: str) -> tuple[_Token, ...]:
    """Compile a path pattern: `$`, `.key`, `[0]`, `["key"]`, `[name=echo]`, `*`, `..` (any depth)."""
    try:
        return json_paths.parse_path(text)
    except json_paths.PathError as exc:
        raise RulesError(str(exc)) from None


pattern_matches = json_paths.matches


@dataclass(frozen=True, slots=True)
class IgnoreRule:
    """Ignore the value at `path` (and below), for calls whose method (and name) match."""

    path: str
    method: str | None = None
    name: str | None = None
    tokens: tuple[_Token, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, path: str, method: str | None = None, name: str | None = None) -> IgnoreRule:
        return cls(path.strip(), method, name, parse_pattern(path))

    def applies_to(self, method: str | None, name: str | None) -> bool:
        if self.method is not None and not fnmatchcase(method or "", self.method):
            return False
        return self.name is None or fnmatchcase(name or "", self.name)


def parse_rules(text: str, source: str = "rules") -> tuple[IgnoreRule, ...]:
    """Parse a rules file: one `[METHOD[:NAME]] PATH` per line; `#` starts a comment."""
    try:
        return tuple(IgnoreRule.parse(path, method, name)
                     for path, method, name in json_paths.rule_lines(text, source))
    except json_paths.PathError as exc:
        raise RulesError(str(exc)) from None


# Volatile by nature: never the same twice, or chosen by the client (rewritten by replay).
DEFAULT_RULES: Final[tuple[IgnoreRule, ...]] = tuple(
    IgnoreRule.parse(p) for p in (
        "$.._meta", "$..progressToken", "$..requestId", "$..sessionId", "$..session_id",
        "$..timestamp", "$..createdAt", "$..updatedAt", "$..lastModified",
    )
)

_TIMESTAMP = re.compile(
    r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$"
)
_ID_SHAPED = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{24,})$"
)


def volatile_pair(expected: str, actual: str) -> bool:
    """Two different strings that are both timestamps, or both UUIDs / long hex ids."""
    if _TIMESTAMP.match(expected) and _TIMESTAMP.match(actual):
        return True
    return bool(_ID_SHAPED.match(expected) and _ID_SHAPED.match(actual))


@dataclass(frozen=True, slots=True)
class DiffOptions:
    """What a comparison ignores: rules (defaults plus the user's) and volatile value pairs."""

    rules: tuple[IgnoreRule, ...] = DEFAULT_RULES
    volatile_values: bool = True
    max_differences: int = 50

    def with_rules(self, extra: Iterable[IgnoreRule]) -> DiffOptions:
        return DiffOptions(self.rules + tuple(extra), self.volatile_values, self.max_differences)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _set_key(parent: Segment | None, expected: list[Any], actual: list[Any]) -> str | None:
    """The identifying field when both lists are sets of uniquely keyed objects."""
    if not isinstance(parent, str) or parent not in SET_KEYS:
        return None
    key = SET_KEYS[parent]
    for items in (expected, actual):
        seen = set()
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get(key), str):
                return None
            if item[key] in seen:
                return None
            seen.add(item[key])
    return key


DEFAULT_OPTIONS: Final = DiffOptions()


def diff(expected: Any, actual: Any, *, options: DiffOptions = DEFAULT_OPTIONS,
         method: str | None = None, name: str | None = None) -> list[Difference]:
    """The differences between two JSON values, at most `options.max_differences`."""
    rules = [r.tokens for r in options.rules if r.applies_to(method, name)]
    out: list[Difference] = []
    limit = options.max_differences

    def ignored(path: Path) -> bool:
        return any(pattern_matches(tokens, path) for tokens in rules)

    def add(path: Path, exp: Any, act: Any) -> None:
        if len(out) < limit and not ignored(path):
            out.append(Difference(format_path(path), exp, act))

    def walk(exp: Any, act: Any, path: Path) -> None:
        if len(out) >= limit or (path and ignored(path)):
            return
        if isinstance(exp, dict) and isinstance(act, dict):
            for key, value in exp.items():
                if key in act:
                    walk(value, act[key], (*path, key))
                else:
                    add((*path, key), value, MISSING)
            for key, value in act.items():
                if key not in exp:
                    add((*path, key), MISSING, value)
            return
        if isinstance(exp, list) and isinstance(act, list):
            key = _set_key(path[-1] if path else None, exp, act)
            if key is not None:
                by_key = {item[key]: item for item in act}
                expected_keys = set()
                for item in exp:
                    expected_keys.add(item[key])
                    segment = (key, item[key])
                    if item[key] in by_key:
                        walk(item, by_key[item[key]], (*path, segment))
                    else:
                        add((*path, segment), item, MISSING)
                for item in act:
                    if item[key] not in expected_keys:
                        add((*path, (key, item[key])), MISSING, item)
                return
            for index in range(max(len(exp), len(act))):
                if index < len(exp) and index < len(act):
                    walk(exp[index], act[index], (*path, index))
                elif index < len(exp):
                    add((*path, index), exp[index], MISSING)
                else:
                    add((*path, index), MISSING, act[index])
            return
        if _is_number(exp) and _is_number(act):
            if exp != act:
                add(path, exp, act)
            return
        if type(exp) is not type(act) or exp != act:
            if (options.volatile_values and isinstance(exp, str) and isinstance(act, str)
                    and volatile_pair(exp, act)):
                return
            add(path, exp, act)

    walk(expected, actual, ())
    return out


def ignore_predicate(options: DiffOptions, method: str | None,
                     name: str | None) -> Callable[[Sequence[Segment]], bool]:
    """Whether a path is ignored for this method and name (for callers outside `diff`)."""
    rules = [r.tokens for r in options.rules if r.applies_to(method, name)]
    return lambda path: any(pattern_matches(tokens, path) for tokens in rules)
