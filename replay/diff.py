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

# Pattern tokens: ("key", name) ("index", n) ("keyed", field, value) ("any",) ("descend",)
_Token = tuple[Any, ...]


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    out = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == quote:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise RulesError(f"unterminated string in path {text!r}")


def _read_bracket(text: str, i: int) -> tuple[_Token, int]:
    """Parse `[...]` starting at text[i] == '['; return the token and the index after `]`."""
    i += 1
    if i < len(text) and text[i] in "\"'":
        key, i = _read_quoted(text, i)
        token: _Token = ("key", key)
    else:
        end = text.find("]", i)
        if end < 0:
            raise RulesError(f"missing ']' in path {text!r}")
        inner = text[i:end].strip()
        i = end
        if inner == "*":
            token = ("any",)
        elif inner.lstrip("-").isdigit():
            token = ("index", int(inner))
        elif "=" in inner:
            name, _, value = inner.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value, _ = _read_quoted(value, 0)
            token = ("keyed", name.strip(), value)
        else:
            raise RulesError(f"cannot read [{inner}] in path {text!r}")
    if i >= len(text) or text[i] != "]":
        raise RulesError(f"missing ']' in path {text!r}")
    return token, i + 1


def _read_name(text: str, i: int) -> tuple[_Token, int]:
    start = i
    while i < len(text) and text[i] not in ".[":
        i += 1
    name = text[start:i]
    if not name:
        raise RulesError(f"empty key in path {text!r}")
    return (("any",) if name == "*" else ("key", name)), i


def parse_pattern(text: str) -> tuple[_Token, ...]:
    """Compile a path pattern: `$`, `.key`, `[0]`, `["key"]`, `[name=echo]`, `*`, `..` (any depth)."""
    text = text.strip()
    if not text.startswith("$"):
        raise RulesError(f"a path starts with '$', got {text!r}")
    tokens: list[_Token] = []
    i = 1
    while i < len(text):
        c = text[i]
        if text.startswith("..", i):
            tokens.append(("descend",))
            i += 2
            if i < len(text) and text[i] == "[":
                token, i = _read_bracket(text, i)
            else:
                token, i = _read_name(text, i)
            tokens.append(token)
        elif c == ".":
            token, i = _read_name(text, i + 1)
            tokens.append(token)
        elif c == "[":
            token, i = _read_bracket(text, i)
            tokens.append(token)
        else:
            raise RulesError(f"unexpected {c!r} at position {i} in path {text!r}")
    return tuple(tokens)


def _segment_matches(token: _Token, segment: Segment) -> bool:
    kind = token[0]
    if kind == "any":
        return True
    if kind == "key":
        return isinstance(segment, str) and fnmatchcase(segment, token[1])
    if kind == "index":
        return isinstance(segment, int) and segment == token[1]
    if kind == "keyed":
        return (isinstance(segment, tuple) and segment[0] == token[1]
                and fnmatchcase(segment[1], token[2]))
    return False


def pattern_matches(tokens: Sequence[_Token], path: Sequence[Segment]) -> bool:
    """Whether a compiled pattern matches exactly this path (`..` spans zero or more segments)."""

    def match(ti: int, pi: int) -> bool:
        while ti < len(tokens):
            token = tokens[ti]
            if token[0] == "descend":
                return any(match(ti + 1, start) for start in range(pi, len(path) + 1))
            if pi >= len(path) or not _segment_matches(token, path[pi]):
                return False
            ti += 1
            pi += 1
        return pi == len(path)

    return match(0, 0)


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


_COMMENT = re.compile(r"\s#")


def parse_rules(text: str, source: str = "rules") -> tuple[IgnoreRule, ...]:
    """Parse a rules file: one `[METHOD[:NAME]] PATH` per line; `#` starts a comment."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        # A comment is a whole line starting with '#', or '#' after whitespace.
        line = _COMMENT.split(raw.strip(), maxsplit=1)[0].strip()
        if not line or line.startswith("#"):
            continue
        scope: str | None = None
        if not line.startswith("$"):
            scope, _, line = line.partition(" ")
            line = line.strip()
            if not line:
                raise RulesError(f"{source}:{number}: a path starting with '$' is missing "
                                 f"after {scope!r}")
        method, name = (None, None)
        if scope is not None:
            method, sep, rest = scope.partition(":")
            name = rest if sep else None
        try:
            rules.append(IgnoreRule.parse(line, method or None, name or None))
        except RulesError as exc:
            raise RulesError(f"{source}:{number}: {exc}") from None
    return tuple(rules)


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
