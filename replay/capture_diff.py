"""What changed between two captures of a server: its surface and its behaviour (pure).

Design notes:
- The surface is what a client (and the model behind it) sees before calling anything: the
  tools, prompts, resources and resource templates with their schemas and descriptions, the
  server's info, instructions, capabilities and protocol version. It is read from the recorded
  answers to `initialize` (or `server/discover`) and the `*/list` requests, every page of
  every session merged (a later answer about the same item wins).
- Every kind of change has one row in `CHANGE_KINDS` (its level and what it means); the
  comparison only says which kind it found, so the README table, the reports and `--fail-on`
  all read the same table. Levels: breaking (a client that worked stops working: a removed
  tool, a new required parameter, a changed type), risky (a client still works but may act
  differently: a changed description is the text a model reads, a prompt-injection vector),
  minor (additions a client may ignore), info.
- Behaviour: calls that match between the captures (method and normalised params, as the mock
  matches them, consumed in recorded order) have their results compared with replay's diff and
  ignore rules; latency per method is summarised as p50/p95 before and after. Listings and the
  handshake are left to the surface comparison, so one change is reported once.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from recorder.model import C2S, ERROR, RESULT
from replay.diff import DEFAULT_OPTIONS, MISSING, Difference, DiffOptions, diff
from replay.matching import Candidate, MatchIndex, normalise
from replay.recorded import RecordedMessage, Recording

BREAKING: Final = "breaking"
RISKY: Final = "risky"
MINOR: Final = "minor"
INFO: Final = "info"
# Worst first; `--fail-on LEVEL` fails on LEVEL and everything before it.
LEVELS: Final = (BREAKING, RISKY, MINOR, INFO)


@dataclass(frozen=True, slots=True)
class ChangeKind:
    """One kind of change: its level and a line saying why it matters."""

    name: str
    level: str
    summary: str


_KINDS: Final = (
    ChangeKind("tool-removed", BREAKING, "a tool clients call is gone"),
    ChangeKind("tool-added", MINOR, "a new tool"),
    ChangeKind("tool-description-changed", RISKY, "the text a model reads to pick and call the "
               "tool changed (check it for injected instructions)"),
    ChangeKind("tool-title-changed", INFO, "the display title changed"),
    ChangeKind("tool-annotations-changed", RISKY, "hints such as readOnlyHint or "
               "destructiveHint changed"),
    ChangeKind("tool-output-schema-changed", RISKY, "the shape of structured results changed"),
    ChangeKind("parameter-added-required", BREAKING, "a new required parameter: existing calls "
               "lack it"),
    ChangeKind("parameter-added-optional", MINOR, "a new optional parameter"),
    ChangeKind("parameter-removed", BREAKING, "a parameter clients send is gone"),
    ChangeKind("parameter-type-changed", BREAKING, "a parameter's type changed"),
    ChangeKind("parameter-now-required", BREAKING, "an optional parameter became required"),
    ChangeKind("parameter-now-optional", MINOR, "a required parameter became optional"),
    ChangeKind("parameter-description-changed", RISKY, "a parameter's description (model-read "
               "text) changed"),
    ChangeKind("parameter-schema-changed", RISKY, "a parameter's schema changed (enum, format, "
               "bounds, default)"),
    ChangeKind("prompt-removed", BREAKING, "a prompt clients get is gone"),
    ChangeKind("prompt-added", MINOR, "a new prompt"),
    ChangeKind("prompt-description-changed", RISKY, "a prompt's description changed"),
    ChangeKind("prompt-argument-added-required", BREAKING, "a new required prompt argument"),
    ChangeKind("prompt-argument-added-optional", MINOR, "a new optional prompt argument"),
    ChangeKind("prompt-argument-removed", BREAKING, "a prompt argument is gone"),
    ChangeKind("prompt-argument-changed", RISKY, "a prompt argument's description or "
               "requiredness changed"),
    ChangeKind("resource-removed", BREAKING, "a listed resource is gone"),
    ChangeKind("resource-added", MINOR, "a new resource"),
    ChangeKind("resource-changed", RISKY, "a resource's name, description or MIME type changed"),
    ChangeKind("template-removed", BREAKING, "a resource template is gone"),
    ChangeKind("template-added", MINOR, "a new resource template"),
    ChangeKind("template-changed", RISKY, "a resource template's name, description or MIME "
               "type changed"),
    ChangeKind("protocol-version-changed", RISKY, "the server negotiated another protocol "
               "version"),
    ChangeKind("capability-removed", BREAKING, "a capability clients may rely on is gone"),
    ChangeKind("capability-added", MINOR, "a new capability"),
    ChangeKind("capability-changed", INFO, "a capability's options changed"),
    ChangeKind("instructions-changed", RISKY, "the server's instructions (model-read text) "
               "changed"),
    ChangeKind("server-info-changed", INFO, "the server's name, title or version changed"),
    ChangeKind("result-became-error", BREAKING, "a call that succeeded now fails"),
    ChangeKind("error-became-result", MINOR, "a call that failed now succeeds"),
    ChangeKind("result-changed", RISKY, "the same call answers differently"),
)
CHANGE_KINDS: Final[dict[str, ChangeKind]] = {k.name: k for k in _KINDS}

# The handshake and listings are compared as the surface, not call by call.
_SURFACE_METHODS: Final = frozenset({
    "initialize", "server/discover", "tools/list", "prompts/list", "resources/list",
    "resources/templates/list", "ping",
})


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the captures, of a kind in CHANGE_KINDS."""

    kind: str
    subject: str
    detail: str
    before: Any = None
    after: Any = None
    differences: tuple[Difference, ...] = ()

    @property
    def level(self) -> str:
        return CHANGE_KINDS[self.kind].level


@dataclass(frozen=True, slots=True)
class Surface:
    """A server as its clients see it, merged over every recorded session."""

    protocol_version: str | None = None
    server_info: Any = None
    instructions: str | None = None
    capabilities: Any = None
    tools: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, Any] = field(default_factory=dict)
    # Which listings the capture holds: an unlisted kind is unknown, not empty.
    listed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LatencyFigures:
    """Latency of one method before and after (ms; None when no answered call)."""

    method: str
    before_count: int
    after_count: int
    before_p50: float | None
    before_p95: float | None
    after_p50: float | None
    after_p95: float | None


@dataclass(frozen=True, slots=True)
class CaptureDiff:
    """Everything `ssetap diff` reports."""

    before: str
    after: str
    changes: tuple[Change, ...]
    latency: tuple[LatencyFigures, ...]
    matched_calls: int = 0
    unmatched_before: int = 0
    unmatched_after: int = 0

    def counts(self) -> dict[str, int]:
        return {level: sum(c.level == level for c in self.changes) for level in LEVELS}

    def exit_code(self, fail_on: str = BREAKING) -> int:
        """1 when a change is at `fail_on` or worse (`none`: never), else 0."""
        if fail_on == "none":
            return 0
        worst = LEVELS[: LEVELS.index(fail_on) + 1]
        return 1 if any(c.level in worst for c in self.changes) else 0


# --- Reading the surface ----------------------------------------------------------------------


def _result(message: RecordedMessage | None) -> Any:
    if message is None or message.kind != RESULT or not isinstance(message.payload, dict):
        return None
    return message.payload.get("result")


def _answered(recording: Recording) -> Iterable[tuple[str, Any, RecordedMessage | None, Any]]:
    """(method, params, response message, latency_ms) of every client request answered."""
    by_id = {m.id: m for m in recording.messages}
    for call in recording.calls:
        if call.direction != C2S:
            continue
        request = by_id.get(call.request_message_id or -1)
        response = by_id.get(call.response_message_id or -1)
        params = request.payload.get("params") if request is not None and isinstance(
            request.payload, dict) else None
        yield call.method, params, response, call.latency_ms


_LISTINGS: Final = {"tools/list": ("tools", "name"), "prompts/list": ("prompts", "name"),
                    "resources/list": ("resources", "uri"),
                    "resources/templates/list": ("resourceTemplates", "uriTemplate")}


def read_surface(recordings: Sequence[Recording]) -> Surface:
    """The merged surface of the recorded sessions (see the module notes)."""
    version = info = instructions = capabilities = None
    found: dict[str, dict[str, Any]] = {"tools": {}, "prompts": {}, "resources": {},
                                        "resourceTemplates": {}}
    listed: set[str] = set()
    for recording in recordings:
        for method, _params, response, _latency in _answered(recording):
            result = _result(response)
            if not isinstance(result, dict):
                continue
            if method in ("initialize", "server/discover"):
                version = result.get("protocolVersion", version)
                info = result.get("serverInfo", info)
                instructions = result.get("instructions", instructions)
                capabilities = result.get("capabilities", capabilities)
            elif method in _LISTINGS:
                key, ident = _LISTINGS[method]
                listed.add(key)
                for item in result.get(key) or ():
                    if isinstance(item, dict) and isinstance(item.get(ident), str):
                        found[key][item[ident]] = item
    return Surface(version, info, instructions, capabilities, found["tools"], found["prompts"],
                   found["resources"], found["resourceTemplates"], frozenset(listed))


# --- Comparing the surface --------------------------------------------------------------------


def _types(schema: Any) -> tuple[str, ...] | None:
    """The JSON types a schema allows, or None when it does not say."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return (kind,)
    if isinstance(kind, list):
        return tuple(sorted(str(k) for k in kind))
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        found = sorted({t for o in options for t in (_types(o) or ("?",))})
        return tuple(found)
    return None


def _without_text(schema: Any) -> Any:
    """A schema without its human text (description, title), for "did the shape change"."""
    if isinstance(schema, dict):
        return {k: _without_text(v) for k, v in schema.items() if k not in ("description",
                                                                            "title")}
    if isinstance(schema, list):
        return [_without_text(v) for v in schema]
    return schema


def _object_schema(schema: Any) -> tuple[dict[str, Any], set[str]]:
    if not isinstance(schema, dict):
        return {}, set()
    properties = schema.get("properties")
    required = schema.get("required")
    return (properties if isinstance(properties, dict) else {},
            {r for r in required if isinstance(r, str)} if isinstance(required, list) else set())


def _parameters(tool: str, before: Any, after: Any) -> list[Change]:
    old, old_required = _object_schema(before)
    new, new_required = _object_schema(after)
    changes = []
    for name in sorted(new.keys() - old.keys()):
        required = name in new_required
        changes.append(Change("parameter-added-required" if required else
                              "parameter-added-optional", f"tool {tool} parameter {name}",
                              f"new {'required' if required else 'optional'} parameter "
                              f"{name}", None, new[name]))
    for name in sorted(old.keys() - new.keys()):
        changes.append(Change("parameter-removed", f"tool {tool} parameter {name}",
                              f"parameter {name} removed", old[name], None))
    for name in sorted(old.keys() & new.keys()):
        subject = f"tool {tool} parameter {name}"
        a, b = old[name], new[name]
        if _types(a) != _types(b):
            changes.append(Change("parameter-type-changed", subject,
                                  f"type {_show(_types(a))} -> {_show(_types(b))}", a, b))
        elif _without_text(a) != _without_text(b):
            changes.append(Change("parameter-schema-changed", subject, "schema changed", a, b))
        if (name in new_required) and name not in old_required:
            changes.append(Change("parameter-now-required", subject, "now required"))
        elif name in old_required and name not in new_required:
            changes.append(Change("parameter-now-optional", subject, "now optional"))
        if _text(a, "description") != _text(b, "description"):
            changes.append(Change("parameter-description-changed", subject,
                                  "description changed", _text(a, "description"),
                                  _text(b, "description")))
    return changes


def _text(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _show(value: Any) -> str:
    if value is None:
        return "(unspecified)"
    if isinstance(value, tuple):
        return "|".join(value)
    return str(value)


def _tools(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    changes = []
    for name in sorted(before.keys() - after.keys()):
        changes.append(Change("tool-removed", f"tool {name}", f"tool {name} removed",
                              before[name], None))
    for name in sorted(after.keys() - before.keys()):
        changes.append(Change("tool-added", f"tool {name}", f"tool {name} added", None,
                              after[name]))
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        subject = f"tool {name}"
        if _text(a, "description") != _text(b, "description"):
            changes.append(Change("tool-description-changed", subject, "description changed",
                                  _text(a, "description"), _text(b, "description")))
        if _text(a, "title") != _text(b, "title"):
            changes.append(Change("tool-title-changed", subject, "title changed",
                                  _text(a, "title"), _text(b, "title")))
        if normalise(_text(a, "annotations")) != normalise(_text(b, "annotations")):
            changes.append(Change("tool-annotations-changed", subject, "annotations changed",
                                  _text(a, "annotations"), _text(b, "annotations")))
        if _without_text(_text(a, "outputSchema")) != _without_text(_text(b, "outputSchema")):
            changes.append(Change("tool-output-schema-changed", subject,
                                  "output schema changed", _text(a, "outputSchema"),
                                  _text(b, "outputSchema")))
        changes.extend(_parameters(name, _text(a, "inputSchema"), _text(b, "inputSchema")))
    return changes


def _arguments(prompt: Any) -> dict[str, Any]:
    arguments = _text(prompt, "arguments")
    return {a["name"]: a for a in arguments or () if isinstance(a, dict)
            and isinstance(a.get("name"), str)}


def _prompts(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    changes = []
    for name in sorted(before.keys() - after.keys()):
        changes.append(Change("prompt-removed", f"prompt {name}", f"prompt {name} removed",
                              before[name], None))
    for name in sorted(after.keys() - before.keys()):
        changes.append(Change("prompt-added", f"prompt {name}", f"prompt {name} added", None,
                              after[name]))
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        if _text(a, "description") != _text(b, "description"):
            changes.append(Change("prompt-description-changed", f"prompt {name}",
                                  "description changed", _text(a, "description"),
                                  _text(b, "description")))
        old, new = _arguments(a), _arguments(b)
        for arg in sorted(new.keys() - old.keys()):
            required = new[arg].get("required") is True
            changes.append(Change("prompt-argument-added-required" if required else
                                  "prompt-argument-added-optional",
                                  f"prompt {name} argument {arg}",
                                  f"new {'required' if required else 'optional'} argument "
                                  f"{arg}", None, new[arg]))
        for arg in sorted(old.keys() - new.keys()):
            changes.append(Change("prompt-argument-removed", f"prompt {name} argument {arg}",
                                  f"argument {arg} removed", old[arg], None))
        for arg in sorted(old.keys() & new.keys()):
            if normalise(old[arg]) != normalise(new[arg]):
                changes.append(Change("prompt-argument-changed",
                                      f"prompt {name} argument {arg}", "argument changed",
                                      old[arg], new[arg]))
    return changes


def _listed(kind: str, label: str, before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Resources or templates: removed, added, or changed in name, description or MIME type."""
    changes = []
    for key in sorted(before.keys() - after.keys()):
        changes.append(Change(f"{kind}-removed", f"{label} {key}", f"{label} {key} removed",
                              before[key], None))
    for key in sorted(after.keys() - before.keys()):
        changes.append(Change(f"{kind}-added", f"{label} {key}", f"{label} {key} added", None,
                              after[key]))
    for key in sorted(before.keys() & after.keys()):
        fields = [f for f in ("name", "title", "description", "mimeType")
                  if _text(before[key], f) != _text(after[key], f)]
        if fields:
            changes.append(Change(f"{kind}-changed", f"{label} {key}",
                                  f"{', '.join(fields)} changed", before[key], after[key]))
    return changes


def _capabilities(before: Any, after: Any) -> list[Change]:
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    changes = []
    for name in sorted(old.keys() - new.keys()):
        changes.append(Change("capability-removed", f"capability {name}",
                              f"capability {name} removed", old[name], None))
    for name in sorted(new.keys() - old.keys()):
        changes.append(Change("capability-added", f"capability {name}",
                              f"capability {name} added", None, new[name]))
    for name in sorted(old.keys() & new.keys()):
        if normalise(old[name]) != normalise(new[name]):
            changes.append(Change("capability-changed", f"capability {name}",
                                  f"capability {name} options changed", old[name], new[name]))
    return changes


def compare_surfaces(before: Surface, after: Surface) -> list[Change]:
    """The surface changes, in a stable order (server, then tools, prompts, resources)."""
    changes: list[Change] = []
    if before.protocol_version and after.protocol_version and \
            before.protocol_version != after.protocol_version:
        changes.append(Change("protocol-version-changed", "server",
                              f"protocol {before.protocol_version} -> {after.protocol_version}",
                              before.protocol_version, after.protocol_version))
    if normalise(before.server_info) != normalise(after.server_info) and \
            before.server_info is not None and after.server_info is not None:
        changes.append(Change("server-info-changed", "server", "server info changed",
                              before.server_info, after.server_info))
    if before.instructions != after.instructions:
        changes.append(Change("instructions-changed", "server", "instructions changed",
                              before.instructions, after.instructions))
    if before.capabilities is not None and after.capabilities is not None:
        changes.extend(_capabilities(before.capabilities, after.capabilities))
    both = before.listed & after.listed
    if "tools" in both:
        changes.extend(_tools(before.tools, after.tools))
    if "prompts" in both:
        changes.extend(_prompts(before.prompts, after.prompts))
    if "resources" in both:
        changes.extend(_listed("resource", "resource", before.resources, after.resources))
    if "resourceTemplates" in both:
        changes.extend(_listed("template", "template", before.templates, after.templates))
    return changes


# --- Behaviour --------------------------------------------------------------------------------


def _label(method: str, params: Any) -> str:
    if isinstance(params, dict):
        name = params.get("name") if method in ("tools/call", "prompts/get") else (
            params.get("uri") if method.startswith("resources/") else None)
        if isinstance(name, str):
            return f"{method} {name}"
    return method


def _body(message: RecordedMessage | None) -> dict[str, Any] | None:
    if message is None or not isinstance(message.payload, dict):
        return None
    if message.kind == RESULT:
        return {"result": message.payload.get("result")}
    if message.kind == ERROR:
        return {"error": message.payload.get("error")}
    return None


def _is_error(body: dict[str, Any]) -> bool:
    result = body.get("result")
    return "error" in body or (isinstance(result, dict) and result.get("isError") is True)


def compare_behaviour(before: Sequence[Recording], after: Sequence[Recording],
                      options: DiffOptions = DEFAULT_OPTIONS) -> tuple[list[Change], int, int, int]:
    """Result changes of matching calls; (changes, matched, unmatched before, unmatched after)."""
    candidates = [Candidate(method, params, body)
                  for recording in before for method, params, response, _ in _answered(recording)
                  if method not in _SURFACE_METHODS and (body := _body(response)) is not None]
    matcher = MatchIndex(candidates).matcher()
    changes: dict[str, Change] = {}
    matched = unmatched_after = 0
    used: set[int] = set()
    for recording in after:
        for method, params, response, _ in _answered(recording):
            body = _body(response)
            if method in _SURFACE_METHODS or body is None:
                continue
            candidate = matcher.match(method, params)
            if candidate is None:
                unmatched_after += 1
                continue
            matched += 1
            used.add(id(candidate))
            label = _label(method, params)
            if label in changes:
                continue  # one change per call label; the first difference says it
            expected = candidate.value
            if not _is_error(expected) and _is_error(body):
                changes[label] = Change("result-became-error", label, "succeeded before, "
                                        "fails now", expected, body)
                continue
            if _is_error(expected) and not _is_error(body):
                changes[label] = Change("error-became-result", label, "failed before, "
                                        "succeeds now", expected, body)
                continue
            name = label.split(" ", 1)[1] if " " in label else None
            differences = tuple(diff(expected, body, options=options, method=method, name=name))
            if differences:
                changes[label] = Change("result-changed", label,
                                        f"{len(differences)} difference"
                                        f"{'s' if len(differences) != 1 else ''}", expected, body,
                                        differences)
    unmatched_before = sum(1 for c in candidates if id(c) not in used)
    return list(changes.values()), matched, unmatched_before, unmatched_after


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return round(cuts[int(q) - 1], 3)


def latency_by_method(before: Sequence[Recording],
                      after: Sequence[Recording]) -> list[LatencyFigures]:
    """p50/p95 of answered calls per method (and tool, prompt or resource), before and after."""
    def collect(recordings: Sequence[Recording]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for recording in recordings:
            for method, params, _response, latency in _answered(recording):
                if latency is not None:
                    out.setdefault(_label(method, params), []).append(latency)
        return out

    old, new = collect(before), collect(after)
    return [LatencyFigures(method, len(old.get(method, ())), len(new.get(method, ())),
                           _percentile(old.get(method, []), 50),
                           _percentile(old.get(method, []), 95),
                           _percentile(new.get(method, []), 50),
                           _percentile(new.get(method, []), 95))
            for method in sorted(old.keys() | new.keys())]


def diff_captures(before: Sequence[Recording], after: Sequence[Recording], *,
                  options: DiffOptions = DEFAULT_OPTIONS, before_name: str = "",
                  after_name: str = "") -> CaptureDiff:
    """Compare two captures of a server (see the module notes)."""
    changes = compare_surfaces(read_surface(before), read_surface(after))
    behaviour, matched, unmatched_before, unmatched_after = compare_behaviour(before, after,
                                                                              options)
    changes.extend(behaviour)
    ordered = sorted(changes, key=lambda c: LEVELS.index(c.level))  # stable within a level
    return CaptureDiff(before_name, after_name, tuple(ordered), tuple(latency_by_method(
        before, after)), matched, unmatched_before, unmatched_after)


__all__ = ["BREAKING", "CHANGE_KINDS", "INFO", "LEVELS", "MINOR", "MISSING", "RISKY",
           "CaptureDiff", "Change", "ChangeKind", "LatencyFigures", "Surface", "compare_behaviour",
           "compare_surfaces", "diff_captures", "latency_by_method", "read_surface"]
