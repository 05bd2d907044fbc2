"""JSON paths that choose fields of MCP messages to redact (`record --redact-path`, rules files).

This module holds the one path grammar, which replay's ignore rules (`replay/diff.py`) use too,
so a path copied from a diff report works here: `$.params.arguments.password`, `$..token`, `$.result.content[0].text`,
`$["key with spaces"]`, `*` for any key or index; a rules file line may be scoped with
`METHOD[:NAME] PATH` (`tools/call:login $.params.arguments.*`). A scoped rule applies to
requests and notifications whose method (and `params.name`) match; an unscoped rule to every
message. Pure: values in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

# Tokens: ("key", glob) ("index", n) ("keyed", field, glob) ("any",) ("descend",)
Token = tuple[Any, ...]
# A path segment: a key, an index, or (field, value) for a list member chosen by one of its
# fields (`[name=echo]`, as replay's diff reports set-like lists).
Segment = str | int | tuple[str, str]


class PathError(ValueError):
    """A path or rules line that cannot be read; the message says where."""


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
    raise PathError(f"unterminated string in path {text!r}")


def _read_bracket(text: str, i: int) -> tuple[Token, int]:
    """Parse `[...]` starting at text[i] == '['; return the token and the index after `]`."""
    i += 1
    if i < len(text) and text[i] in "\"'":
        key, i = _read_quoted(text, i)
        token: Token = ("key", key)
    else:
        end = text.find("]", i)
        if end < 0:
            raise PathError(f"missing ']' in path {text!r}")
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
            raise PathError(f"cannot read [{inner}] in path {text!r}")
    if i >= len(text) or text[i] != "]":
        raise PathError(f"missing ']' in path {text!r}")
    return token, i + 1


def _read_name(text: str, i: int) -> tuple[Token, int]:
    start = i
    while i < len(text) and text[i] not in ".[":
        i += 1
    name = text[start:i]
    if not name:
        raise PathError(f"empty key in path {text!r}")
    return (("any",) if name == "*" else ("key", name)), i


def parse_path(text: str) -> tuple[Token, ...]:
    """Compile `$`, `.key`, `[0]`, `["key"]`, `[name=echo]`, `*`, `[*]` and `..` (any depth)."""
    text = text.strip()
    if not text.startswith("$"):
        raise PathError(f"a path starts with '$', got {text!r}")
    tokens: list[Token] = []
    i = 1
    while i < len(text):
        if text.startswith("..", i):
            tokens.append(("descend",))
            i += 2
            token, i = _read_bracket(text, i) if text[i:i + 1] == "[" else _read_name(text, i)
        elif text[i] == ".":
            token, i = _read_name(text, i + 1)
        elif text[i] == "[":
            token, i = _read_bracket(text, i)
        else:
            raise PathError(f"unexpected {text[i]!r} at position {i} in path {text!r}")
        tokens.append(token)
    return tuple(tokens)


def _segment_matches(token: Token, segment: Segment) -> bool:
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


def matches(tokens: Sequence[Token], path: Sequence[Segment]) -> bool:
    """Whether `tokens` match exactly this path (`..` spans zero or more segments)."""

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


_COMMENT = re.compile(r"\s#")


def rule_lines(text: str, source: str = "rules") -> Iterator[tuple[str, str | None, str | None]]:
    """The rules of a rules file as (path, method, name): one `[METHOD[:NAME]] PATH` a line,
    `#` starting a comment (a whole line, or after whitespace). Errors name `source:line`."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.split(raw.strip(), maxsplit=1)[0].strip()
        if not line or line.startswith("#"):
            continue
        scope: str | None = None
        if not line.startswith("$"):
            scope, _, line = line.partition(" ")
            line = line.strip()
            if not line:
                raise PathError(f"{source}:{number}: a path starting with '$' is missing "
                                f"after {scope!r}")
        method, name = None, None
        if scope:
            method, sep, rest = scope.partition(":")
            name = rest if sep and rest else None
        try:
            parse_path(line)
        except PathError as exc:
            raise PathError(f"{source}:{number}: {exc}") from None
        yield line, method or None, name


@dataclass(frozen=True, slots=True)
class PathRule:
    """Redact the value at `path` in messages whose method (and tool name) match the scope."""

    path: str
    tokens: tuple[Token, ...]
    method: str | None = None
    name: str | None = None

    def applies_to(self, message: dict[str, Any]) -> bool:
        if self.method is None:
            return True
        method = message.get("method")
        if not isinstance(method, str) or not fnmatchcase(method, self.method):
            return False
        if self.name is None:
            return True
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        return isinstance(name, str) and fnmatchcase(name, self.name)


def parse_rules(text: str, source: str = "rules") -> tuple[PathRule, ...]:
    """A rules file: one `[METHOD[:NAME]] PATH` a line; `#` starts a comment."""
    return tuple(PathRule(path, parse_path(path), method, name)
                 for path, method, name in rule_lines(text, source))


def redact(message: dict[str, Any], rules: tuple[PathRule, ...],
           replace: Callable[[Any], Any]) -> bool:
    """Replace, in place, every value of `message` a rule chooses; whether anything changed."""
    active = [rule.tokens for rule in rules if rule.applies_to(message)]
    if not active:
        return False
    changed = False

    def walk(node: Any, path: list[Segment]) -> None:
        nonlocal changed
        children: list[tuple[Segment, Any]]
        if isinstance(node, dict):
            children = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        else:
            return
        for segment, value in children:
            path.append(segment)
            if any(matches(tokens, path) for tokens in active):
                node[segment] = replace(value)
                changed = True
            else:
                walk(value, path)
            path.pop()

    walk(message, [])
    return changed
