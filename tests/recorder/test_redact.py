"""Redaction: keyed, consistent pseudonyms; same-length scrubbing; raw mode untouched."""

from __future__ import annotations

from recorder.redact import Redactor, session_param, token_params

KEY = b"k" * 32


def test_pseudonyms_are_consistent_per_key_and_differ_across_keys():
    a, b = Redactor(KEY), Redactor(b"x" * 32)
    assert a.pseudonym("secret", "token") == a.pseudonym("secret", "token")
    assert a.pseudonym("secret", "token") != b.pseudonym("secret", "token")
    assert a.pseudonym("secret", "token").startswith("redacted:token:")


def test_session_ids_keep_length_and_shape():
    r = Redactor(KEY)
    hex_id = "9f1c" * 8
    uuid = "0b6e1f2a-1234-4cde-8f00-0123456789ab"
    assert len(r.session_id(hex_id)) == 32 and all(c in "0123456789abcdef" for c in r.session_id(hex_id))
    assert r.session_id(hex_id) != hex_id
    pseudo = r.session_id(uuid)
    assert len(pseudo) == len(uuid) and [i for i, c in enumerate(pseudo) if c == "-"] == [8, 13, 18, 23]


def test_headers_keep_structure_but_not_secrets():
    r = Redactor(KEY)
    stored = dict(r.headers([
        ("Authorization", "Bearer abcdefghijklmnop"), ("Cookie", "a=1234567890; b=zzzzzzzzzz"),
        ("Set-Cookie", "AWSALB=stickystickysticky; Path=/; HttpOnly"), ("X-Api-Key", "key-1234567890"),
        ("WWW-Authenticate", 'Bearer resource_metadata="https://x"'), ("Accept", "text/event-stream"),
        ("Mcp-Session-Id", "9f1c" * 8),
    ]))
    assert stored["Authorization"].startswith("Bearer redacted:token:")
    assert stored["Cookie"].startswith("a=redacted:cookie:") and "; b=redacted:cookie:" in stored["Cookie"]
    assert stored["Set-Cookie"].startswith("AWSALB=redacted:cookie:") and stored["Set-Cookie"].endswith("; Path=/; HttpOnly")
    assert stored["X-Api-Key"].startswith("redacted:token:")
    assert stored["WWW-Authenticate"] == 'Bearer resource_metadata="https://x"'
    assert stored["Accept"] == "text/event-stream"
    assert len(stored["Mcp-Session-Id"]) == 32 and stored["Mcp-Session-Id"] != "9f1c" * 8


def test_urls_lose_tokens_userinfo_and_session_ids():
    r = Redactor(KEY)
    url = "http://user:pw@h:1/messages/?session_id=" + "ab" * 16 + "&access_token=tok123456789&page=2"
    stored = r.url(url)
    assert "user" not in stored and "pw@" not in stored
    assert "ab" * 16 not in stored and "tok123456789" not in stored
    assert "page=2" in stored and "access_token=redacted:token:" in stored
    assert session_param(url) == "ab" * 16
    assert token_params(url) == ["access_token"]


def test_learned_secrets_are_scrubbed_from_bytes_with_the_same_length():
    r = Redactor(KEY)
    r.header("Authorization", "Bearer abcdefghijklmnop")
    sid = r.session_id("9f1c" * 8)
    data = b'{"echo": "abcdefghijklmnop"} data: /messages/?session_id=' + b"9f1c" * 8
    out = r.scrub(data)
    assert len(out) == len(data)
    assert b"abcdefghijklmnop" not in out and b"9f1c" * 8 not in out
    assert sid.encode() in out


def test_raw_mode_changes_nothing():
    r = Redactor(None)
    assert r.header("Authorization", "Bearer x") == "Bearer x"
    assert r.url("http://h/?token=abc") == "http://h/?token=abc"
    assert r.session_id("abc") == "abc"
    assert r.scrub(b"Bearer x") == b"Bearer x"
