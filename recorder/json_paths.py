"""JSON paths that choose fields of MCP messages to redact (`record --redact-path`, rules files).

The syntax is replay's ignore rules' (`replay/diff.py`), so a path copied from a diff report
works here too: `$.params.arguments.password`, `$..token`, `$.result.content[0].text`,
`$["key with spaces"]`, `*` for any key or index; a rules file line may be scoped with
`METHOD[:NAME] PATH` (`tools/call:login $.params.arguments.*`). A scoped rule applies to
requests and notifications whose method (and `params.name`) match; an unscoped rule to every
message. Pure: values in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

# Tokens: ("key", glob) ("index", n) ("any",) ("descend",)
Token = tuple[Any, ...]
Segment = str | int


class PathError(ValueError):
    """A path or rules line that cannot be read; the message says where."""


def parse_path(text: str) -> tuple[Token, ...]:
    """Compile `$`, `.key`, `[0]`, `["key"]`, `*`, `[*]` and `..` (any depth)."""
    text = text.strip()
    if not text.startswith("$"):
        raise PathError(f"a path starts with '$', got {text!r}")
    tokens: list[Token] = []
    i = 1
    while i < len(text):
        if text.startswith("..", i):
            tokens.append(("descend",))
            i += 2
            token, i = _bracket(text, i) if text[i:i + 1] == "[" else _name(text, i)
        elif text[i] == ".":
            token, i = _name(text, i + 1)
        elif text[i] == "[":
            token, i = _bracket(text, i)
        else:
            raise PathError(f"unexpected {text[i]!r} at position {i} in path {text!r}")
        tokens.append(token)
    return tuple(tokens)


def _name(text: str, i: int) -> tuple[Token, int]:
    start = i
    while i < len(text) and text[i] not in ".[":
        i += 1
    if i == start:
        raise PathError(f"empty key in path {text!r}")
    name = text[start:i]
    return (("any",) if name == "*" else ("key", name)), i


def _bracket(text: str, i: int) -> tuple[Token, int]:
    end = text.find("]", i)
    if end < 0:
        raise PathError(f"missing ']' in path {text!r}")
    inner = text[i + 1:end].strip()
    if inner == "*":
        return ("any",), end + 1
    if inner.lstrip("-").isdigit():
        return ("index", int(inner)), end + 1
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "\"'":
        return ("key", inner[1:-1]), end + 1
    raise PathError(f"cannot read [{inner}] in path {text!r}")


def matches(tokens: tuple[Token, ...], path: list[Segment]) -> bool:
    """Whether `tokens` match exactly this path (`..` spans zero or more segments)."""

    def match(ti: int, pi: int) -> bool:
        while ti < len(tokens):
            token = tokens[ti]
            if token[0] == "descend":
                return any(match(ti + 1, start) for start in range(pi, len(path) + 1))
            if pi >= len(path):
                return False
            segment = path[pi]
            if token[0] == "key" and not (isinstance(segment, str)
                                          and fnmatchcase(segment, token[1])):
                return False
            if token[0] == "index" and segment != token[1]:
                return False
            ti += 1
            pi += 1
        return pi == len(path)

    return match(0, 0)


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


_COMMENT = re.compile(r"\s#")


def parse_rule(line: str) -> PathRule:
    """One `[METHOD[:NAME]] PATH`."""
    line = line.strip()
    scope: str | None = None
    if not line.startswith("$"):
        scope, _, line = line.partition(" ")
        if not line.strip():
            raise PathError(f"a path starting with '$' is missing after {scope!r}")
    method, name = None, None
    if scope:
        method, sep, rest = scope.partition(":")
        name = rest if sep and rest else None
    return PathRule(line.strip(), parse_path(line), method or None, name)


def parse_rules(text: str, source: str = "rules") -> tuple[PathRule, ...]:
    """A rules file: one `[METHOD[:NAME]] PATH` a line; `#` starts a comment."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.split(raw.strip(), maxsplit=1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            rules.append(parse_rule(line))
        except PathError as exc:
            raise PathError(f"{source}:{number}: {exc}") from None
    return tuple(rules)


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
