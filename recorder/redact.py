"""Keep secrets out of captures: keyed pseudonyms for credentials and session ids.

Design notes:
- Pseudonyms are HMAC-SHA256 with a per-capture key, so the same secret always maps to the same
  pseudonym (sessions still group, tokens can be told apart) while nobody without the key can
  brute-force short secrets from the capture.
- Credentials in headers and query strings become `redacted:<kind>:<12 hex>`, keeping the
  non-secret structure (auth scheme, cookie names, parameter names).
- Session ids (`Mcp-Session-Id`, legacy `session_id`/`sessionId`) are replaced by a pseudonym of
  the same length and character classes. Every secret learned is also scrubbed from stored bytes
  (bodies, SSE data, raw chunks) with a same-length substitute, so byte offsets of events in raw
  chunks stay true.
- A `Redactor(None)` is the opt-in raw mode: everything passes through.
- Only what is stored is redacted; forwarded traffic is never touched (the addon keeps the flow).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "apikey", "x-auth-token",
     "x-access-token", "private-token", "x-goog-api-key", "x-amz-security-token"}
)
_SECRETISH_HEADER = re.compile(r"(api[-_]?key|token|secret|password|credential)", re.I)
_SESSION_HEADERS = frozenset({"mcp-session-id"})
_SESSION_PARAMS = frozenset({"session_id", "sessionid"})
_SECRETISH_PARAM = re.compile(
    r"^(.*token.*|.*secret.*|.*password.*|passwd|pwd|.*api[-_]?key.*|key|code|code_verifier|"
    r"state|auth|sig|signature|credential|client_secret)$",
    re.I,
)
# Secrets shorter than this are not scrubbed from bodies: they would hit innocent bytes.
MIN_SCRUB_LENGTH = 8

_HEX_LOWER = "0123456789abcdef"
_HEX_UPPER = "0123456789ABCDEF"
_DIGITS = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_key() -> bytes:
    """A fresh random capture key."""
    return secrets.token_bytes(32)


def is_token_param(name: str) -> bool:
    """Whether a query parameter's name says it carries a credential."""
    return bool(_SECRETISH_PARAM.match(name)) and name.lower() not in _SESSION_PARAMS


def is_secret_header(name: str) -> bool:
    lower = name.lower()
    if lower in ("www-authenticate", "authentication-info"):
        return False  # challenges carry no secret and explain 401s
    return (
        lower in _CREDENTIAL_HEADERS
        or lower in ("cookie", "set-cookie")
        or lower in _SESSION_HEADERS
        or bool(_SECRETISH_HEADER.search(lower))
    )


class Redactor:
    """Turns headers, URLs and bytes into their stored, redacted form."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._scrub: dict[bytes, bytes] = {}
        self._pattern: re.Pattern[bytes] | None = None

    @property
    def raw(self) -> bool:
        return self.key is None

    # Pseudonyms ---------------------------------------------------------------------------

    def _digest(self, value: str, kind: str, length: int = 32) -> bytes:
        assert self.key is not None
        out = b""
        counter = 0
        while len(out) < length:
            out += hmac.new(self.key, f"{kind}\0{counter}\0{value}".encode(), hashlib.sha256).digest()
            counter += 1
        return out[:length]

    def pseudonym(self, value: str, kind: str) -> str:
        """`redacted:<kind>:<12 hex>`, or the value itself in raw mode."""
        if self.key is None:
            return value
        return f"redacted:{kind}:{self._digest(value, kind).hex()[:12]}"

    def same_length(self, value: str, kind: str = "sid") -> str:
        """A pseudonym with the value's length and character classes (hex stays hex)."""
        if self.key is None:
            return value
        digest = self._digest(value, kind, max(len(value), 1))
        is_hex = all(c in _HEX_LOWER for c in value) or all(c in _HEX_UPPER for c in value)
        out = []
        for c, b in zip(value, digest):
            if is_hex and c in _HEX_LOWER:
                out.append(_HEX_LOWER[b % 16])
            elif is_hex and c in _HEX_UPPER:
                out.append(_HEX_UPPER[b % 16])
            elif c in _DIGITS:
                out.append(_DIGITS[b % 10])
            elif c in _LOWER:
                out.append(_LOWER[b % 26])
            elif c in _UPPER:
                out.append(_UPPER[b % 26])
            else:
                out.append(c)  # separators (dashes of a UUID) keep the shape readable
        return "".join(out)

    def session_id(self, value: str) -> str:
        """The stored form of a session id; learned so it is scrubbed from bytes too."""
        replacement = self.same_length(value, "sid")
        self._learn(value, replacement)
        return replacement

    def _learn(self, secret: str, replacement: str) -> None:
        if self.key is None or len(secret) < MIN_SCRUB_LENGTH:
            return
        raw = secret.encode()
        if raw in self._scrub:
            return
        self._scrub[raw] = replacement.encode()
        # Longest first, so a secret that contains another is replaced whole.
        self._pattern = re.compile(
            b"|".join(re.escape(s) for s in sorted(self._scrub, key=len, reverse=True))
        )

    def learn_credential(self, secret: str, kind: str) -> None:
        """Remember a credential so its occurrences in stored bytes are scrubbed."""
        if self.key is not None:
            self._learn(secret, self.same_length(secret, kind))

    # Stored forms ---------------------------------------------------------------------------

    def scrub(self, data: bytes) -> bytes:
        """Replace every learned secret in `data` by its same-length pseudonym."""
        if self._pattern is None or not data:
            return data
        table = self._scrub
        return self._pattern.sub(lambda m: table[m.group(0)], data)

    def scrub_text(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self.scrub(text.encode()).decode("utf-8", "replace")

    def header(self, name: str, value: str) -> str:
        """The stored form of one header value."""
        if self.key is None or not is_secret_header(name):
            return value
        lower = name.lower()
        if lower in _SESSION_HEADERS:
            return self.session_id(value)
        if lower == "cookie":
            return "; ".join(self._cookie_pair(p.strip()) for p in value.split(";") if p.strip())
        if lower == "set-cookie":
            first, _, attributes = value.partition(";")
            return self._cookie_pair(first.strip()) + (f";{attributes}" if attributes else "")
        scheme, sep, credential = value.partition(" ")
        if sep and scheme.isalpha() and credential:
            self.learn_credential(credential.strip(), "token")
            return f"{scheme} {self.pseudonym(credential.strip(), 'token')}"
        self.learn_credential(value, "token")
        return self.pseudonym(value, "token")

    def _cookie_pair(self, pair: str) -> str:
        name, sep, value = pair.partition("=")
        if not sep:
            return pair
        self.learn_credential(value, "cookie")
        return f"{name}={self.pseudonym(value, 'cookie')}"

    def headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, self.header(k, v)) for k, v in headers]

    def url(self, url: str) -> str:
        """The stored form of a URL: userinfo dropped, session ids and credentials replaced."""
        if self.key is None:
            return url
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        if not parts.query:
            return urlunsplit((parts.scheme, netloc, parts.path, "", parts.fragment))
        pairs = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name.lower() in _SESSION_PARAMS:
                value = self.session_id(value)
            elif is_token_param(name) and value:
                self.learn_credential(value, "token")
                value = self.pseudonym(value, "token")
            pairs.append(f"{quote(name, safe='')}={quote(value, safe=':')}")
        return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pairs), parts.fragment))


def session_param(url: str) -> str | None:
    """The legacy transport's session id carried in a URL query (`session_id` or `sessionId`)."""
    query = urlsplit(url).query
    if not query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.lower() in _SESSION_PARAMS and value:
            return value
    return None


def token_params(url: str) -> list[str]:
    """Names of query parameters that look like credentials (for the token-in-url check)."""
    query = urlsplit(url).query
    return [n for n, v in parse_qsl(query, keep_blank_values=True) if v and is_token_param(n)]
