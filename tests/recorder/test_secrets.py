"""The one classifier of secrets, and redaction agreeing with it on every case of the table."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import pytest

from recorder import secrets
from recorder.redact import Redactor, token_params

KEY = b"k" * 32
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
RANDOM_TOKEN = "q8Zr2kLm9XvT4bNc7WpA1sDf6GhJ3eYu0iOk5RtE"  # 40 chars of base64url, no structure

# (header name, value, secret?) -- secret means the stored value differs from the sent one.
HEADER_CASES = [
    ("Authorization", "Bearer abcdefghijklmnopqrstuvwx", True),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNzd29yZA==", True),
    ("Cookie", "sid=abcdefghijk; theme=dark", True),
    ("Set-Cookie", "sid=abcdefghijk; Path=/; HttpOnly", True),
    ("X-Api-Key", "k-1234567890", True),
    ("Api-Key", "k-1234567890", True),
    ("X-Goog-Api-Key", "k-1234567890", True),
    ("X-Auth", "s3cr3t-value", True),
    ("X-Auth-Token", "s3cr3t-value", True),
    ("X-Access-Token", "s3cr3t-value", True),
    ("Private-Token", "s3cr3t-value", True),
    ("X-Csrf-Token", "s3cr3t-value", True),
    ("X-Amz-Security-Token", "FwoGZXIvYXdzEXAMPLE", True),
    ("X-Client-Secret", "s3cr3t-value", True),
    ("X-Hub-Signature-256", "sha256=0123456789abcdef", True),
    ("X-Password", "hunter2hunter2", True),
    ("Mcp-Session-Id", "9f1c" * 8, True),
    ("X-Debug", f"echo {JWT}", True),
    ("X-Trace", f"key={AWS_KEY_ID}", True),
    ("X-Forwarded-Auth", f"Bearer {RANDOM_TOKEN}", True),
    ("X-Opaque", RANDOM_TOKEN, True),
    ("Location", "http://127.0.0.1:1/cb?code=abcdefghijkl&state=zyxwvutsrqpo", True),
    ("Referer", "http://127.0.0.1:1/page?access_token=abcdefghijkl", True),
    ("Content-Location", "/r?X-Amz-Signature=0123456789abcdef", True),
    ("WWW-Authenticate", 'Bearer resource_metadata="http://127.0.0.1:1/.well-known/x"', False),
    ("Location", "http://127.0.0.1:1/next?page=2", False),
    ("Accept", "application/json, text/event-stream", False),
    ("Content-Type", "application/json", False),
    ("Last-Event-ID", RANDOM_TOKEN, False),
    ("User-Agent", "python-httpx/0.28.1", False),
    ("Mcp-Protocol-Version", "2025-06-18", False),
    ("X-Request-Id", "0b6e1f2a-1234-4cde-8f00-0123456789ab", False),
    ("X-Note", "hello from the fixture-builder-with-long-dashed-words", False),
]

# (query parameter, value, secret?)
PARAM_CASES = [
    ("access_key", "abcdefghijkl", True),
    ("api_key", "abcdefghijkl", True),
    ("apikey", "abcdefghijkl", True),
    ("key", "abcdefghijkl", True),
    ("client_key", "abcdefghijkl", True),
    ("X-Amz-Signature", "0123456789abcdef", True),
    ("X-Amz-Credential", "AKIA/20260101/us-east-1/s3/aws4_request", True),
    ("X-Amz-Security-Token", "FwoGZXIvYXdzEXAMPLE", True),
    ("X-Goog-Signature", "0123456789abcdef", True),
    ("sig", "0123456789abcdef", True),
    ("signature", "0123456789abcdef", True),
    ("jwt", "abcdefghijkl", True),
    ("bearer", "abcdefghijkl", True),
    ("authorization", "abcdefghijkl", True),
    ("auth", "abcdefghijkl", True),
    ("credentials", "abcdefghijkl", True),
    ("access_token", "abcdefghijkl", True),
    ("refresh_token", "abcdefghijkl", True),
    ("token", "abcdefghijkl", True),
    ("client_secret", "abcdefghijkl", True),
    ("password", "abcdefghijkl", True),
    ("code", "abcdefghijkl", True),
    ("code_verifier", "abcdefghijkl", True),
    ("state", "abcdefghijkl", True),
    ("assertion", "abcdefghijkl", True),
    ("opaque", JWT, True),
    ("ref", AWS_KEY_ID, True),
    ("page", "2", False),
    ("cursor", "abc", False),
    ("q", "hello world", False),
    ("monkey", "banana", False),
    ("status", "ok", False),
    ("codec", "opus", False),
    ("session_id", "ab" * 16, False),  # a session id: same-length pseudonym, not a token
]

# (field of an OAuth-style body, secret?)
FIELD_CASES = [
    ("access_token", True), ("refresh_token", True), ("id_token", True), ("token", True),
    ("client_secret", True), ("code", True), ("code_verifier", True), ("assertion", True),
    ("client_assertion", True), ("password", True), ("device_code", True),
    ("registration_access_token", True), ("subject_token", True),
    ("grant_type", False), ("client_id", False), ("redirect_uri", False), ("token_type", False),
    ("expires_in", False), ("scope", False), ("client_name", False),
]

# (text, kinds of shapes found in it)
SHAPE_CASES = [
    (JWT, ["jwt"]),
    (f"x {AWS_KEY_ID} y", ["aws-key-id"]),
    ("Bearer abcdefghijklmnopqrstuvwx", ["auth"]),
    ("Basic dXNlcjpwYXNzd29yZA==", ["auth"]),
    (RANDOM_TOKEN, ["token"]),
    ("0b6e1f2a-1234-4cde-8f00-0123456789ab", []),
    ("9f1c" * 8, []),  # hex ids (session ids, etags) are structure, not random enough
    ("application/json; charset=utf-8", []),
    ("the-quick-brown-fox-jumps-over-the-lazy-dog-again", []),
    ("AKIAIOSFODNN7EXAMPLEX", []),  # too long for a key id
]


def classified_header(name: str, value: str) -> bool:
    """What the classifier says about one header, the way redaction must read it."""
    if secrets.secret_header(name) or secrets.session_header(name):
        return True
    if secrets.url_header(name):
        return bool(secrets.secret_query_params(value)) or secrets.has_secret_shape(value)
    return not secrets.structural_header(name) and secrets.has_secret_shape(value)


@pytest.mark.parametrize(("name", "value", "secret"), HEADER_CASES)
def test_header_table(name: str, value: str, secret: bool) -> None:
    assert classified_header(name, value) is secret
    stored = dict(Redactor(KEY).headers([(name, value)]))[name]
    assert (stored != value) is secret, stored
    if secret and not secrets.session_header(name):
        assert "redacted:" in stored


@pytest.mark.parametrize(("name", "value", "secret"), PARAM_CASES)
def test_query_parameter_table(name: str, value: str, secret: bool) -> None:
    url = "http://127.0.0.1:1/mcp?" + urlencode({name: value, "page": "1"})
    assert secrets.secret_query_value(name, value) is secret
    # The security check's list and redaction's replacements are the same list.
    assert secrets.secret_query_params(url) == ([name] if secret else [])
    assert token_params(url) == secrets.secret_query_params(url)
    stored = dict(parse_qsl(urlsplit(Redactor(KEY).url(url)).query))
    replaced = [n for n, v in stored.items() if v.startswith("redacted:")]
    assert replaced == secrets.secret_query_params(url)
    assert stored["page"] == "1"
    if name == "session_id":
        assert stored[name] != value and len(stored[name]) == len(value)


@pytest.mark.parametrize(("name", "secret"), FIELD_CASES)
def test_body_field_table(name: str, secret: bool) -> None:
    assert secrets.secret_field(name) is secret
    value = "v-0123456789abcdef"
    r = Redactor(KEY)
    form = dict(parse_qsl(r.body(urlencode({name: value}).encode(),
                                 "application/x-www-form-urlencoded").decode()))
    document = orjson.loads(r.body(orjson.dumps({name: value}), "application/json"))
    assert (form[name] != value) is secret
    assert (document[name] != value) is secret


@pytest.mark.parametrize(("text", "kinds"), SHAPE_CASES)
def test_value_shapes(text: str, kinds: list[str]) -> None:
    assert [f.kind for f in secrets.find_shapes(text)] == kinds


def test_json_rpc_bodies_keep_their_arguments() -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "login", "arguments": {"code": "abcdefghijkl"}}})
    assert Redactor(KEY).body(body, "application/json") == body


def test_secrets_learned_anywhere_are_scrubbed_from_every_header() -> None:
    r = Redactor(KEY)
    stored = dict(r.headers([("Authorization", "Bearer abcdefghijklmnop"),
                             ("X-Echo", "you sent abcdefghijklmnop")]))
    assert "abcdefghijklmnop" not in stored["X-Echo"]
    later = dict(r.headers([("X-Other", "again abcdefghijklmnop")]))
    assert "abcdefghijklmnop" not in later["X-Other"]


def test_oauth_bodies_are_learned_for_later_scrubbing() -> None:
    r = Redactor(KEY)
    response = orjson.dumps({"access_token": "at-0123456789abcdef", "token_type": "Bearer",
                             "refresh_token": "rt-0123456789abcdef", "expires_in": 3600})
    stored = orjson.loads(r.body(response, "application/json"))
    assert stored["token_type"] == "Bearer" and stored["expires_in"] == 3600
    assert b"at-0123456789abcdef" not in r.scrub(b'{"echo": "at-0123456789abcdef"}')


def test_stored_urls_classify_like_the_urls_they_came_from() -> None:
    r = Redactor(KEY)
    for name, value, _ in PARAM_CASES:
        url = "http://127.0.0.1:1/mcp?" + urlencode({name: value})
        assert secrets.secret_query_params(r.url(url)) == secrets.secret_query_params(url), name


def test_the_token_in_url_check_agrees_with_redaction_on_every_case() -> None:
    # recorder.health.security.credential_params asks recorder.secrets.secret_query_params.
    import dataclasses

    from tests.recorder.test_health import CFG, MCP, Wire, rpc

    config = dataclasses.replace(CFG, heartbeat_interval=0, request_timeout=0)
    disagree = []
    for name, value, secret in PARAM_CASES:
        w = Wire()
        headers = w.initialize(0.0)
        w.post("p", 1.0, rpc(1, "tools/list"), headers, url=MCP + "?" + urlencode({name: value}))
        flagged = [f for f in w.flags(config) if f.kind == "token-in-url"]
        if bool(flagged) != secret:
            disagree.append(name)
    assert disagree == []
