"""The lint's rules as data: a stable id, the spec section it comes from, the versions it binds.

Ids are part of ssetap's interface (flag details, SARIF rule ids `spec-violation/<id>`):
never renamed, only added. Sections name the specification page of the newest revision that
states the rule (`basic/transports` is `docs/specification/<version>/basic/transports.mdx`).
Where older revisions differ from the schema the `schema` rule validates against (mcp-types
holds 2025-11-25 and 2026-07-28), the difference is a rule of its own here (batches,
`MCP-Protocol-Version`, `resultType`, the 2026 error codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from recorder.health.registry import VERSIONS

LEGACY: Final = ("2024-11-05",)
STREAMABLE: Final = ("2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")
FROM_2025_06_18: Final = ("2025-06-18", "2025-11-25", "2026-07-28")
STATEFUL: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
V2026: Final = ("2026-07-28",)


@dataclass(frozen=True, slots=True)
class LintRule:
    id: str
    section: str
    versions: tuple[str, ...]
    summary: str


RULES: Final[tuple[LintRule, ...]] = (
    # JSON-RPC shape.
    LintRule("jsonrpc-version", "basic (JSON-RPC messages)", VERSIONS,
             'every message carries "jsonrpc": "2.0"'),
    LintRule("id-type", "basic (Requests)", VERSIONS,
             "a request id is a string or an integer (not null, a fraction, a boolean or a "
             "structure)"),
    LintRule("result-xor-error", "basic (Responses)", VERSIONS,
             "a response carries exactly one of result and error"),
    LintRule("error-shape", "basic (Responses)", VERSIONS,
             "an error has an integer code and a string message"),
    LintRule("batch", "basic (JSON-RPC batching, 2025-03-26 only)", VERSIONS,
             "JSON-RPC batches only where the negotiated version allows them (2025-03-26)"),
    # Lifecycle.
    LintRule("negotiated-version", "basic/lifecycle (Version negotiation)", STATEFUL,
             "the server answers initialize with the version the client offered when it "
             "supports it, else with a version it supports: a published revision"),
    # Streamable HTTP.
    LintRule("post-accept", "basic/transports (Sending messages to the server)", STREAMABLE,
             "a POST's Accept lists both application/json and text/event-stream"),
    LintRule("accepted-no-body", "basic/transports (Sending messages to the server)",
             STREAMABLE,
             "a POST of only notifications or responses is answered 202 Accepted with no body"),
    LintRule("response-content-type", "basic/transports (Sending messages to the server)",
             STREAMABLE,
             "a POST with a request is answered with application/json or text/event-stream"),
    LintRule("protocol-version-header", "basic/transports (Protocol version header)",
             FROM_2025_06_18,
             "requests after initialization carry MCP-Protocol-Version (from 2025-06-18)"),
    LintRule("session-id-echo", "basic/transports (Session management)", STREAMABLE,
             "once the server issued Mcp-Session-Id, the client sends it on every later "
             "request"),
    LintRule("session-required-400", "basic/transports (Session management)", STREAMABLE,
             "a server that issues sessions answers a non-initialize request without a "
             "session id with 400 Bad Request"),
    LintRule("unknown-session-404", "basic/transports (Session management)", STREAMABLE,
             "a request naming a session the server no longer knows is answered 404 Not Found "
             "(not 400), so the client knows to initialize again"),
    LintRule("delete-session", "basic/transports (Session management)", STREAMABLE,
             "a DELETE that ends a session carries its Mcp-Session-Id"),
    # Legacy HTTP+SSE.
    LintRule("legacy-endpoint-first", "basic/transports (HTTP with SSE), 2024-11-05", LEGACY,
             "the first event of a legacy SSE stream is `endpoint`"),
    LintRule("legacy-message-event", "basic/transports (HTTP with SSE), 2024-11-05", LEGACY,
             "server messages on a legacy SSE stream are `event: message`"),
    LintRule("legacy-post-accepted", "basic/transports (HTTP with SSE), 2024-11-05", LEGACY,
             "POSTs to the legacy message endpoint are answered 202 Accepted (the answer "
             "travels on the SSE stream)"),
    # 2026-07-28.
    LintRule("method-header", "basic/transports (Standard MCP request headers), 2026-07-28",
             V2026, "Mcp-Method and Mcp-Name headers equal the body's method and name"),
    LintRule("result-type", "basic (Result types), 2026-07-28", V2026,
             "every result carries resultType"),
    LintRule("error-code-2026", "basic (Error codes), 2026-07-28", V2026,
             "2026-07-28 error codes: resource not found is -32602 (not -32002)"),
    # Schema.
    LintRule("schema", "schema.ts of the negotiated version (mcp-types)", VERSIONS,
             "params and results match the schema of the negotiated version"),
)

BY_ID: Final[dict[str, LintRule]] = {rule.id: rule for rule in RULES}


def markdown_table() -> str:
    """The README's table of lint rules, generated from `RULES`."""
    lines = ["| rule | versions | spec section | what it checks |", "|---|---|---|---|"]
    for rule in RULES:
        versions = "all" if rule.versions == VERSIONS else ", ".join(rule.versions)
        lines.append(f"| `{rule.id}` | {versions} | {rule.section} | {rule.summary} |")
    return "\n".join(lines)
