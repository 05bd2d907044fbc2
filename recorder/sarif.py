"""SARIF 2.1.0 from a check: one result per flag, one rule per flag kind (and per lint rule).

Code-scanning dashboards (GitHub, GitLab, Azure DevOps) read SARIF, so a capture checked in
CI can gate a pull request like a linter. The rules come from the registry
(recorder.health.registry.KINDS) and the protocol lint's rule table, so a new kind or lint
rule appears here with no change to this module. Each result points at the capture file
(a capture has no source lines; line 1 keeps dashboards that need a region happy) and names
the session, stream and call as logical locations. `partialFingerprints` carries the flag's
subject, so the same finding in a re-recorded capture is recognised as the same alert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recorder.check import CheckResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_LEVELS = {"info": "note", "warning": "warning", "error": "error"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ssetap")
    except PackageNotFoundError:
        return "0"


def _rules() -> list[dict[str, Any]]:
    from recorder.health.registry import KINDS
    from recorder.health.spec.rules import RULES

    rules: list[dict[str, Any]] = []
    for kind in KINDS:
        rules.append({
            "id": kind.name,
            "name": "".join(part.title() for part in kind.name.split("-")),
            "shortDescription": {"text": kind.summary.split(";")[0]},
            "fullDescription": {"text": kind.summary},
            "help": {"text": f"{kind.summary}. Usual cause: {kind.cause}."},
            "defaultConfiguration": {"level": _LEVELS[kind.severity]},
            "properties": {"concern": kind.concern, "versions": list(kind.versions),
                           "transports": list(kind.transports), "tags": ["mcp", kind.concern]},
        })
    for rule in RULES:
        rules.append({
            "id": f"spec-violation/{rule.id}",
            "name": "SpecViolation" + "".join(p.title() for p in rule.id.split("-")),
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": f"{rule.summary} (MCP specification, {rule.section})"},
            "help": {"text": f"{rule.summary}. See the MCP specification, {rule.section}; "
                             f"applies to {', '.join(rule.versions)}."},
            "defaultConfiguration": {"level": "warning"},
            "properties": {"concern": "spec", "section": rule.section,
                           "versions": list(rule.versions), "tags": ["mcp", "spec"]},
        })
    return rules


def sarif_report(result: CheckResult) -> dict[str, Any]:
    """The SARIF log of a check result, as a JSON-ready dict."""
    rules = _rules()
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = []
    for flag, seen_live in zip(result.flags, result.seen_live):
        rule_id = flag.kind
        if flag.kind == "spec-violation" and f"spec-violation/{flag.details.get('rule')}" in index:
            rule_id = f"spec-violation/{flag.details['rule']}"
        logical = [{"name": f"session {flag.session_id}", "kind": "namespace"}] \
            if flag.session_id is not None else []
        if flag.stream_id is not None:
            logical.append({"name": f"stream {flag.stream_id}", "kind": "object"})
        if flag.call_id is not None:
            logical.append({"name": f"call {flag.call_id}", "kind": "function"})
        item: dict[str, Any] = {
            "ruleId": rule_id,
            "level": _LEVELS.get(flag.severity, "warning"),
            "message": {"text": flag.message},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": result.path},
                                     "region": {"startLine": 1}},
                **({"logicalLocations": logical} if logical else {}),
            }],
            "partialFingerprints": {
                "ssetapSubject/v1": f"{flag.kind}/{flag.details.get('subject', '')}"},
            "properties": {"t": flag.t, "session": flag.session_id, "stream": flag.stream_id,
                           "call": flag.call_id, "message_id": flag.message_id,
                           "exchange": flag.exchange_id, "seen_live": seen_live,
                           "details": flag.details},
        }
        if rule_id in index:
            item["ruleIndex"] = index[rule_id]
        results.append(item)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "ssetap", "version": _version(),
                                "rules": rules}},
            "artifacts": [{"location": {"uri": result.path}}],
            "results": results,
        }],
    }
