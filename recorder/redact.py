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
- What is secret is decided by `recorder.secrets` (the one classifier); this module decides
  what each kind becomes. Values whose shape says "secret" (JWTs, AWS key ids, `Bearer`
  credentials, long random tokens) are replaced in any header and URL; OAuth fields in form
  and JSON bodies; the query strings of `Location`, `Referer` and `Content-Location`.
- The `Redactor` holds values; `recorder.redact_stage` applies it to rows.
- A `Redactor(None)` is the opt-in raw mode: everything passes through.
- Only what is stored is redacted; forwarded traffic is never touched (the addon keeps the flow).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import orjson

import recorder.secrets as classify

# Secrets shorter than this are not scrubbed from bodies: they would hit innocent bytes.
MIN_SCRUB_LENGTH = 8

_HEX_LOWER = "0123456789abcdef"
_HEX_UPPER = "0123456789ABCDEF"
_DIGITS = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_key() -> bytes:
    """A fresh random capture key."""
    return os.urandom(32)


def is_token_param(name: str) -> bool:
    """Whether a query parameter's name says it carries a credential (see recorder.secrets)."""
    return classify.secret_param(name)


def is_secret_header(name: str) -> bool:
    """Whether a header's value is stored pseudonymised (credentials and session ids)."""
    return classify.secret_header(name) or classify.session_header(name)


class Redactor:
    """Turns headers, URLs and bytes into their stored, redacted form."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._scrub: dict[bytes, bytes] = {}
        self._pattern: re.Pattern[bytes] | None = None
        # The same, for text (stored SSE data and messages are str: no encode/decode round trip).
        self._scrub_text: dict[str, str] = {}
        self._text_pattern: re.Pattern[str] | None = None
        # The last text scrubbed: a lone message's row holds the very str of its SSE event.
        self._memo: tuple[str, str] | None = None

    @property
    def raw(self) -> bool:
        return self.key is None

    @property
    def learned(self) -> bool:
        """Whether any secret was learned yet (until then, scrubbing changes nothing)."""
        return self._pattern is not None

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
        self._scrub_text[secret] = replacement
        self._memo = None
        # Longest first, so a secret that contains another is replaced whole.
        self._pattern = re.compile(
            b"|".join(re.escape(s) for s in sorted(self._scrub, key=len, reverse=True))
        )
        self._text_pattern = re.compile(
            "|".join(re.escape(s) for s in sorted(self._scrub_text, key=len, reverse=True))
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
        if self._text_pattern is None or not text:
            return text
        memo = self._memo
        if memo is not None and memo[0] is text:
            return memo[1]
        table = self._scrub_text
        out = self._text_pattern.sub(lambda m: table[m.group(0)], text)
        self._memo = (text, out)
        return out

    def header(self, name: str, value: str) -> str:
        """The stored form of one header value (learned secrets of other headers not scrubbed:
        `headers` does that, once it has learned from all of them)."""
        if self.key is None:
            return value
        lower = name.lower()
        if classify.session_header(lower):
            return self.session_id(value)
        if classify.url_header(lower):
            return self.url(value)
        if not classify.secret_header(lower):
            if classify.structural_header(lower):
                return value
            return self.shapes(value)
        if lower in ("cookie",):
            return "; ".join(self._cookie_pair(p.strip()) for p in value.split(";") if p.strip())
        if lower in ("set-cookie", "set-cookie2"):
            first, _, attributes = value.partition(";")
            return self._cookie_pair(first.strip()) + (f";{attributes}" if attributes else "")
        scheme, sep, credential = value.partition(" ")
        if sep and scheme.isalpha() and credential.strip():
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
        """Stored headers: each redacted by its kind, then every value scrubbed of every secret
        learned so far (a token from `Authorization` echoed in `X-Debug` is caught too)."""
        if self.key is None:
            return headers
        stored = [(k, self.header(k, v)) for k, v in headers]
        return [(k, self.scrub_text(v)) for k, v in stored]

    def shapes(self, text: str) -> str:
        """`text` with every value shaped like a secret (JWT, AWS key id, `Bearer` credential,
        long random token) replaced by its pseudonym, and learned for scrubbing elsewhere."""
        if self.key is None or not text:
            return text
        found = classify.find_shapes(text)
        if not found:
            return text
        out, last = [], 0
        for item in found:
            out.append(text[last:item.start])
            self.learn_credential(item.secret, item.kind)
            out.append(self.pseudonym(item.secret, item.kind))
            last = item.end
        out.append(text[last:])
        return "".join(out)

    def url(self, url: str) -> str:
        """The stored form of a URL: userinfo dropped, session ids and credentials replaced
        (by parameter name and by value shape, in the query and in the path)."""
        if self.key is None:
            return url
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        path = self.shapes(parts.path)
        if not parts.query:
            return self.scrub_text(urlunsplit((parts.scheme, netloc, path, "", parts.fragment)))
        pairs = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if classify.session_param_name(name):
                value = self.session_id(value)
            elif value and classify.secret_query_value(name, value):
                self.learn_credential(value, "token")
                value = self.pseudonym(value, "token")
            pairs.append(f"{quote(name, safe='')}={quote(value, safe=':')}")
        fragment = self.shapes(parts.fragment)
        return self.scrub_text(urlunsplit((parts.scheme, netloc, path, "&".join(pairs), fragment)))

    def body(self, data: bytes, content_type: str | None) -> bytes:
        """The stored form of an HTTP body: OAuth-style fields (form encoded, or a JSON object
        that is not JSON-RPC) replaced by pseudonyms, then learned secrets scrubbed."""
        if self.key is None or not data:
            return data
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            data = self._form(data)
        elif data[:1] in (b"{",) and ("json" in ctype or not ctype):
            data = self._oauth_json(data)
        return self.scrub(data)

    def _form(self, data: bytes) -> bytes:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            return data
        pairs = []
        changed = False
        for name, value in parse_qsl(text, keep_blank_values=True):
            if value and (classify.secret_field(name) or classify.has_secret_shape(value)):
                self.learn_credential(value, "token")
                value = self.pseudonym(value, "token")
                changed = True
            elif classify.session_param_name(name):
                value = self.session_id(value)
                changed = True
            pairs.append(f"{quote(name, safe='')}={quote(value, safe=':')}")
        return "&".join(pairs).encode() if changed else data

    def _oauth_json(self, data: bytes) -> bytes:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        if not isinstance(document, dict) or "jsonrpc" in document:
            return data  # MCP traffic: arguments and results are the point of a capture
        changed = False
        for name, value in list(document.items()):
            if isinstance(value, str) and value and classify.secret_field(name):
                self.learn_credential(value, "token")
                document[name] = self.pseudonym(value, "token")
                changed = True
        return orjson.dumps(document) if changed else data


def session_param(url: str) -> str | None:
    """The legacy transport's session id carried in a URL query (`session_id` or `sessionId`)."""
    for name, value in classify.query_pairs(url):
        if classify.session_param_name(name) and value:
            return value
    return None


def token_params(url: str) -> list[str]:
    """Names of query parameters that carry credentials (for the token-in-url check)."""
    return classify.secret_query_params(url)


# --- What a capture holds ----------------------------------------------------------------------

# `meta.redaction` values.
REDACTED = "hmac-sha256 pseudonyms"
RAW = "off (raw capture)"
MIXED = "mixed: raw and redacted recordings (run `ssetap redact` before sharing it)"


def redaction_after(previous: str | None, recording: str) -> str:
    """`meta.redaction` once a recording (RAW or REDACTED) is appended to a capture."""
    if previous is None or previous == recording:
        return recording
    return MIXED


def redaction_state(meta: dict[str, str]) -> str:
    """`raw`, `redacted` or `mixed` (a capture from before the key existed counts as redacted)."""
    value = meta.get("redaction", REDACTED)
    if value == MIXED or value.startswith("mixed"):
        return "mixed"
    return "raw" if value == RAW or value.startswith("off") else "redacted"


def mixed_warning(meta: dict[str, str], path: str) -> str | None:
    """The one-line warning `sessions` and `check` print for a mixed capture."""
    if redaction_state(meta) != "mixed":
        return None
    return (f"ssetap: warning: {path} holds raw and redacted recordings; secrets of the raw "
            f"ones are in it (`ssetap redact {path} OUT.db` makes a shareable copy)")
