"""The flag kinds: one table of name, severity, summary, usual cause and where each applies.

Theory of operation: a kind is data first. Detectors raise kinds by name; the severity a flag
gets by default, the line the README's table shows, the SARIF rule `ssetap check --sarif`
writes and the list of kinds the end-to-end tests must cover are all read from `KINDS`.
Adding a kind is one entry here, one detector method and one end-to-end scenario
(tests/recorder/test_health_registry.py checks the README table against this one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from recorder.gaps import FLAG_KINDS as RECORDER_KINDS

# Protocol revisions ssetap knows (mcp-wire.md), oldest first; "legacy" SSE is 2024-11-05.
VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")
TRANSPORTS: Final = ("sse", "streamable-http")


@dataclass(frozen=True, slots=True)
class FlagKind:
    """One kind of finding. `severity_note` qualifies the default where it depends on state."""

    name: str
    severity: str
    summary: str
    cause: str
    concern: str  # the detector module that raises it: streams, reconnects, calls, ...
    versions: tuple[str, ...] = VERSIONS
    transports: tuple[str, ...] = TRANSPORTS
    severity_note: str = ""
    # A kind raised outside the detectors (e.g. a capture gap noticed by the recorder's worker
    # or store) names the module that raises it; its concern is then "recorder".
    raised_by: str = ""


HEARTBEAT_MISSING: Final = "heartbeat-missing"
IDLE_TIMEOUT_CLOSE: Final = "idle-timeout-close"
BUFFERED_STREAM: Final = "buffered-stream"
STREAM_TRUNCATED: Final = "stream-truncated"
RECONNECT_STORM: Final = "reconnect-storm"
RESUME_GAP: Final = "resume-gap"
RATE_LIMITED: Final = "rate-limited"
REQUEST_TIMEOUT: Final = "request-timeout"
REQUEST_CANCELLED: Final = "request-cancelled"
LATE_RESPONSE: Final = "late-response"
ORPHAN_RESPONSE: Final = "orphan-response"
DUPLICATE_ID: Final = "duplicate-id"
ERROR_RESPONSE: Final = "error-response"
SESSION_NOT_FOUND: Final = "session-not-found"
REINIT_MISSING: Final = "reinit-missing"
CROSS_SESSION_DELIVERY: Final = "cross-session-delivery"
INVALID_MESSAGE: Final = "invalid-message"
SPEC_VIOLATION: Final = "spec-violation"
PLAINTEXT_REMOTE: Final = "plaintext-remote"
TOKEN_IN_URL: Final = "token-in-url"
WILDCARD_CORS: Final = "wildcard-cors"
ORIGIN_ACCEPTED: Final = "origin-accepted"
MISSING_AUTH: Final = "missing-auth"

_RESUMABLE = ("2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")

KINDS: Final[tuple[FlagKind, ...]] = (
    FlagKind(HEARTBEAT_MISSING, "warning",
             "an open stream quiet for longer than its own learned heartbeat cadence allows (or, "
             "with no heartbeat at all, idling towards known idle timeouts: \"no heartbeat, at "
             "risk\")",
             "the server's keep-alive stopped, or it sends none", "streams"),
    FlagKind(IDLE_TIMEOUT_CLOSE, "warning",
             "a stream cut at a suspiciously round duration or idle time (15, 30, 60, 100, "
             "300 s... or a value that recurs in the capture); a stream the server ended cleanly "
             "after its content is not counted by its duration",
             "an idle or read timeout in a proxy, load balancer or client", "streams"),
    FlagKind(BUFFERED_STREAM, "warning",
             "events arriving in bursts after silence, or static hints: `Content-Encoding` on "
             "`text/event-stream`, nginx without `X-Accel-Buffering: no`",
             "a buffering proxy or compression middleware", "streams"),
    FlagKind(STREAM_TRUNCATED, "warning",
             "a stream that ended mid-event, or before the response it carried",
             "a proxy or server timeout, a crash or a deploy cutting the connection", "streams"),
    FlagKind(RECONNECT_STORM, "error",
             "a client reconnecting many times in a short window, without backoff, faster than "
             "the server's `retry:` or `Retry-After`; counted per client and endpoint across "
             "sessions (legacy reconnects and re-initialize loops), naming the sessions",
             "a reconnect loop without backoff", "reconnects"),
    FlagKind(RESUME_GAP, "error",
             "a reconnect without `Last-Event-ID` after ids were issued, events missing or "
             "replayed from another stream",
             "a client that drops the SSE cursor, or an event store that loses events",
             "reconnects", versions=_RESUMABLE, transports=("streamable-http",)),
    FlagKind(RATE_LIMITED, "warning",
             "a 429 or 503 answer (with its `Retry-After` when given)",
             "a rate or connection limit in the server or a gateway", "reconnects"),
    FlagKind(REQUEST_TIMEOUT, "error",
             "no answer within the deadline (60 s by default, per method if wanted), saying "
             "whether it was cut by a closed stream or still pending; a call that kept "
             "receiving progress is reported as slow (warning)",
             "a hung tool or a response lost on the way", "calls",
             severity_note="warning when slow, not hung"),
    FlagKind(REQUEST_CANCELLED, "info",
             "a call its client cancelled before the deadline (`notifications/cancelled`, or "
             "from 2026-07-28 closing its response stream), with the client's reason and "
             "whether an answer still came, whichever SDK sent it",
             "a client-side timeout or a user who gave up", "calls"),
    FlagKind(LATE_RESPONSE, "warning",
             "an answer after the request was cancelled",
             "a server that answers cancellations, or a cancel racing the result", "calls"),
    FlagKind(ORPHAN_RESPONSE, "warning",
             "an answer matching no outstanding request",
             "a response routed to the wrong stream, or replayed twice", "calls"),
    FlagKind(DUPLICATE_ID, "error",
             "a request id reused within a session",
             "a client that restarts its counter or shares a session", "calls",
             severity_note="warning once the first request had completed"),
    FlagKind(ERROR_RESPONSE, "info",
             "JSON-RPC errors, with code and message",
             "the call failed; read the message", "calls"),
    FlagKind(SESSION_NOT_FOUND, "error",
             "404/400 \"session not found\" on a session that worked before (load-balancer "
             "stickiness), or a client that never recovers by re-initializing",
             "no sticky sessions, a restart or an expired session", "sessions",
             transports=("streamable-http",)),
    FlagKind(REINIT_MISSING, "error",
             "a legacy client that reconnected to a new endpoint without `initialize`",
             "an EventSource that reconnected by itself", "sessions",
             versions=("2024-11-05",), transports=("sse",)),
    FlagKind(CROSS_SESSION_DELIVERY, "error",
             "a message delivered on a stream of a session it does not belong to: an answer "
             "whose id matches a request of another session, or progress with another "
             "session's token; names both sessions",
             "a server or gateway that broadcasts to every open stream (supergateway's legacy "
             "SSE mode)", "sessions"),
    FlagKind(INVALID_MESSAGE, "warning",
             "SSE data or a POST body that is not valid JSON-RPC",
             "a client or server bug, or a proxy that rewrote the payload", "calls"),
    FlagKind(SPEC_VIOLATION, "warning",
             "traffic that breaks a rule of the MCP specification for the negotiated version; "
             "one finding per rule broken, with the rule's id and spec section (see Protocol "
             "lint)",
             "an implementation that deviates from the specification", "spec"),
    FlagKind(PLAINTEXT_REMOTE, "warning",
             "plain HTTP to a non-loopback server",
             "a missing TLS terminator or an http:// URL", "security"),
    FlagKind(TOKEN_IN_URL, "error",
             "credential-like query parameters (names only are reported)",
             "a client putting its token in the URL", "security"),
    FlagKind(WILDCARD_CORS, "warning",
             "`Access-Control-Allow-Origin: *` (or an echoed foreign origin) on the MCP "
             "endpoint",
             "a permissive CORS middleware default", "security"),
    FlagKind(ORIGIN_ACCEPTED, "warning",
             "a foreign Origin answered 2xx by a loopback server (DNS rebinding)",
             "no Origin validation", "security"),
    FlagKind(MISSING_AUTH, "info",
             "a non-loopback server answering without any auth",
             "authentication left off a public endpoint", "security"),
    # Raised by the recorder itself (the store writes them as `source='recorder'`), not by a
    # detector: what the capture is missing, from recorder.gaps' own table.
    *(FlagKind(name, severity, summary, cause, "recorder", raised_by="recorder/gaps.py")
      for name, severity, summary, cause in RECORDER_KINDS),
)

BY_NAME: Final[dict[str, FlagKind]] = {kind.name: kind for kind in KINDS}

# Kind -> default severity (the interface older code and tests read).
FLAG_KINDS: Final[dict[str, str]] = {kind.name: kind.severity for kind in KINDS}


def markdown_table() -> str:
    """The README's table of kinds, generated from `KINDS`."""
    lines = ["| kind | default severity | what it means |", "|---|---|---|"]
    for kind in KINDS:
        severity = f"{kind.severity} ({kind.severity_note})" if kind.severity_note \
            else kind.severity
        lines.append(f"| `{kind.name}` | {severity} | {kind.summary} |")
    return "\n".join(lines)
