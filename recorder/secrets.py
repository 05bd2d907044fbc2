"""The one classifier of secrets: which header names, query parameters, body fields and value
shapes carry credentials. Tables as data, pure functions over them.

Design notes:
- Redaction (`recorder/redact.py`) and the security checks (`token-in-url`) both ask this module,
  so they cannot disagree about what is secret; `tests/recorder/test_secrets.py` holds the table
  of cases both must agree on.
- Names are matched case-insensitively against anchored patterns. A name can be secret because of
  what it is called (`X-Auth-Token`, `access_key`) or a value because of what it looks like (a
  JWT, an AWS access key id, a `Bearer` credential, a long high-entropy token), wherever it is.
- Session ids (`Mcp-Session-Id`, `session_id`) are a kind of their own: they are pseudonymised
  with a same-length value so sessions still group, and they are not "tokens in URLs".
- Headers that explain an exchange and carry no secret (`WWW-Authenticate`, `Last-Event-ID`,
  trace ids) are named explicitly, so that shape scanning leaves them alone.
- Body fields are only looked for in OAuth-style bodies (form encoded, or a JSON object that is
  not JSON-RPC): tool arguments and results stay as they are unless a redact path names them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True, slots=True)
class NameRule:
    """A name pattern (anchored regex, case-insensitive) and why it marks a secret."""

    pattern: str
    why: str


# Header names whose whole value is a credential.
SECRET_HEADERS: tuple[NameRule, ...] = (
    NameRule(r"authorization|proxy-authorization", "HTTP authentication"),
    NameRule(r"cookie|set-cookie|set-cookie2", "cookies"),
    NameRule(r".*api[-_]?key.*|apikey", "API keys"),
    NameRule(r"x-auth.*", "X-Auth* credentials"),
    NameRule(r".*token.*", "tokens (X-Access-Token, X-Amz-Security-Token, Private-Token, ...)"),
    NameRule(r".*secret.*", "secrets"),
    NameRule(r".*signature.*", "signatures"),
    NameRule(r".*password.*|.*passwd.*", "passwords"),
    NameRule(r".*credential.*", "credentials"),
    NameRule(r"x-amz-security-token|x-goog-iap-jwt-assertion|cf-access-jwt-assertion|.*-jwt.*",
             "cloud identity assertions"),
)
# Header names that look secret by the patterns above but carry none (challenges explain 401s).
NOT_SECRET_HEADERS = frozenset({"www-authenticate", "authentication-info",
                                "proxy-authenticate", "access-control-allow-credentials"})
# Session id headers: same-length pseudonyms, so sessions still group.
SESSION_HEADERS = frozenset({"mcp-session-id"})
# Headers whose value is a URL: its query string is redacted like a request's.
URL_HEADERS = frozenset({"location", "referer", "content-location", "origin-url"})
# Headers whose values are structure (ids, versions, sizes): never shape-scanned.
STRUCTURAL_HEADERS = frozenset({
    "last-event-id", "etag", "if-none-match", "if-match", "traceparent", "tracestate",
    "x-request-id", "request-id", "x-correlation-id", "mcp-protocol-version", "content-type",
    "content-length", "content-encoding", "transfer-encoding", "date", "host", "user-agent",
    "accept", "accept-encoding", "connection", "cache-control", "server", "vary",
    "www-authenticate", "authentication-info",
})

# Query parameter names that carry credentials.
SECRET_PARAMS: tuple[NameRule, ...] = (
    NameRule(r".*token.*", "tokens (access_token, id_token, X-Amz-Security-Token, ...)"),
    NameRule(r".*secret.*", "secrets (client_secret, ...)"),
    NameRule(r".*password.*|passwd|pwd|pass", "passwords"),
    NameRule(r".*api[-_]?key.*|key|.*[-_]key", "keys (api_key, access_key, client_key, ...)"),
    NameRule(r"x-amz-.*|x-goog-(signature|credential)", "presigned URLs"),
    NameRule(r"sig|signature|.*[-_]signature|hmac", "signatures"),
    NameRule(r"jwt|bearer|auth|authorization|assertion|client_assertion", "credentials"),
    NameRule(r"credentials?|.*[-_]credentials?", "credentials"),
    NameRule(r"code|code_verifier|state|nonce|otp|ticket|device_code|user_code",
             "OAuth codes and state"),
)
# Legacy transport session ids in URLs (`/messages/?session_id=...`).
SESSION_PARAMS = frozenset({"session_id", "sessionid"})

# Fields of OAuth-style bodies (token requests and responses, client registration).
SECRET_FIELDS: tuple[NameRule, ...] = (
    NameRule(r"access_token|refresh_token|id_token|token|subject_token|actor_token|"
             r"registration_access_token|device_code|user_code", "tokens"),
    NameRule(r"client_secret|code|code_verifier|assertion|client_assertion|password|"
             r"private_key|secret", "secrets and codes"),
)


@dataclass(frozen=True, slots=True)
class Shape:
    """A value that is a secret whatever it is called."""

    kind: str
    pattern: str
    why: str


# Order matters: the first shape that matches a stretch of text names it.
SHAPES: tuple[Shape, ...] = (
    Shape("jwt", r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", "JSON Web Tokens"),
    Shape("aws-key-id", r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])",
          "AWS access key ids"),
    Shape("auth", r"(?i:bearer|basic|token|digest)\s+[A-Za-z0-9._~+/=-]{8,}",
          "HTTP credentials in any header"),
    Shape("token", r"(?<![A-Za-z0-9_+/=-])[A-Za-z0-9_+/=-]{32,}(?![A-Za-z0-9_+/=-])",
          "long high-entropy tokens"),
)
# Bits per character above which a long run of token characters is taken for a random secret.
# Random base64url scores ~5.5, hex ~4; English words and paths joined by dashes score below 4.
HIGH_ENTROPY_BITS = 4.2

_compiled: dict[tuple[NameRule, ...], re.Pattern[str]] = {}


def _any_of(rules: tuple[NameRule, ...]) -> re.Pattern[str]:
    pattern = _compiled.get(rules)
    if pattern is None:
        pattern = re.compile("|".join(f"(?:{r.pattern})" for r in rules), re.I)
        _compiled[rules] = pattern
    return pattern


_SHAPES = [(shape.kind, re.compile(shape.pattern)) for shape in SHAPES]


# --- Names -----------------------------------------------------------------------------------


def secret_header(name: str) -> bool:
    """Whether a header's whole value is a credential (session ids are `session_header`)."""
    lower = name.lower()
    if lower in NOT_SECRET_HEADERS or lower in SESSION_HEADERS:
        return False
    return bool(_any_of(SECRET_HEADERS).fullmatch(lower))


def session_header(name: str) -> bool:
    return name.lower() in SESSION_HEADERS


def url_header(name: str) -> bool:
    """Whether a header's value is a URL whose query string must be redacted."""
    return name.lower() in URL_HEADERS


def structural_header(name: str) -> bool:
    """Whether a header's value is structure that shape scanning must leave alone."""
    return name.lower() in STRUCTURAL_HEADERS


def secret_param(name: str) -> bool:
    """Whether a query parameter's name says it carries a credential."""
    lower = name.lower()
    if lower in SESSION_PARAMS:
        return False
    return bool(_any_of(SECRET_PARAMS).fullmatch(lower))


def session_param_name(name: str) -> bool:
    return name.lower() in SESSION_PARAMS


def secret_field(name: str) -> bool:
    """Whether a field of an OAuth-style body (form or JSON) carries a credential."""
    return bool(_any_of(SECRET_FIELDS).fullmatch(name.lower()))


# --- Values ----------------------------------------------------------------------------------


def entropy_bits(text: str) -> float:
    """Shannon entropy per character."""
    if not text:
        return 0.0
    counts: dict[str, int] = {}
    for c in text:
        counts[c] = counts.get(c, 0) + 1
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def _random_looking(text: str) -> bool:
    has_digit = any(c.isdigit() for c in text)
    has_alpha = any(c.isalpha() for c in text)
    return has_digit and has_alpha and entropy_bits(text) >= HIGH_ENTROPY_BITS


@dataclass(frozen=True, slots=True)
class Found:
    """A secret found by its shape: `text[start:end]`, and the credential part of it."""

    kind: str
    start: int
    end: int
    secret: str


def find_shapes(text: str) -> list[Found]:
    """Secrets in `text` recognised by their shape, left to right, not overlapping."""
    found: list[Found] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _SHAPES:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(s < end and start < e for s, e in taken):
                continue
            value = match.group(0)
            if kind == "auth":
                credential = value.split(None, 1)[1]
                if len(credential) < 16 and not _random_looking(credential):
                    continue
                start = end - len(credential)
                value = credential
            elif kind == "token" and not _random_looking(value):
                continue
            taken.append((start, end))
            found.append(Found(kind, start, end, value))
    return sorted(found, key=lambda f: f.start)


def has_secret_shape(text: str) -> bool:
    return bool(find_shapes(text))


# --- URLs ------------------------------------------------------------------------------------


def query_pairs(url: str) -> Iterator[tuple[str, str]]:
    query = urlsplit(url).query
    if query:
        yield from parse_qsl(query, keep_blank_values=True)


def secret_query_params(url: str) -> list[str]:
    """Names of the query parameters of `url` that carry a credential, by name or by shape.

    This is what the `token-in-url` check reports and exactly what redaction replaces.
    """
    return [name for name, value in query_pairs(url) if value and secret_query_value(name, value)]


def secret_query_value(name: str, value: str) -> bool:
    """Whether one query parameter is a credential (its name says so, or its value's shape)."""
    if session_param_name(name):
        return False
    # A value ssetap already pseudonymised was a secret: the check then agrees on stored URLs.
    return secret_param(name) or value.startswith("redacted:") or has_secret_shape(value)
