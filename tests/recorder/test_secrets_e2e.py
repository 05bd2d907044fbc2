"""The secrets corpus end to end: every kind of secret in every place, sent through a real
`ssetap record` by the SDK's own client (OAuth flow included), then every byte of every file
ssetap wrote searched for each secret. And `ssetap redact` of a `--raw` capture of the same."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import pytest

# The OAuth peer is built from the SDK v1 API (FastMCP and its authorization server routes).
pytest.importorskip("mcp.server.fastmcp", reason="the OAuth corpus peer uses the mcp v1 API")

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from recorder.cli import main
from tests.recorder.capture_query import q
from tests.recorder.oauth_peer import free_port, oauth_client, start_oauth_server
from tests.recorder.secrets_corpus import Corpus, leaks, shape_of


async def _session(url: str, corpus: Corpus) -> dict[str, str]:
    auth, seen = oauth_client(f"{url}/mcp")
    target = f"{url}/mcp?{urlencode(corpus.query)}"
    async with streamablehttp_client(target, headers=corpus.headers, auth=auth) as (r, w, _):
        async with ClientSession(r, w) as session:
            await session.initialize()
            # The server echoes secrets it was sent: they come back in SSE data and raw chunks.
            echoed = await session.call_tool("echo", {"text": corpus.headers["X-Auth"]})
            assert echoed.content[0].text == corpus.headers["X-Auth"]  # type: ignore[union-attr]
            await session.call_tool("echo", {"text": "plain words stay"})
            await session.call_tool("login", {"user": "ann", "password": corpus.password})
            await session.call_tool("echo", {"text": corpus.password})
    return seen


def run_corpus(record, tmp_path: Path, name: str, *args: str) -> tuple[Path, Corpus]:
    """Record the corpus through `ssetap record` (with `args`); the secrets to look for."""
    corpus = Corpus.build()
    port = free_port()
    db = tmp_path / name / "capture.db"
    db.parent.mkdir()
    rec = record(f"http://127.0.0.1:{port}", *args, db=db)
    server, provider, snoop = start_oauth_server(port, rec.url)
    try:
        seen = asyncio.run(_session(rec.url, corpus))
    finally:
        assert rec.stop() == 0, rec.output
        server.stop()
    for i, value in enumerate(provider.issued):  # client_secret, code, access/refresh tokens
        corpus.secrets[f"issued {i}"] = value
    verifiers = [r["code_verifier"] for r in snoop.token_requests if "code_verifier" in r]
    assert verifiers and seen.get("code") and seen.get("state")
    corpus.secrets["code_verifier"] = verifiers[0]
    corpus.secrets["state"] = seen["state"]
    corpus.secrets["code (Location)"] = seen["code"]
    return db, corpus


EXPECTED_TOOLS = [("tools/call", "echo", "result"), ("tools/call", "echo", "result"),
                  ("tools/call", "login", "result"), ("tools/call", "echo", "result")]


def test_no_secret_of_the_corpus_reaches_any_file(record, tmp_path: Path) -> None:
    db, corpus = run_corpus(record, tmp_path, "redacted",
                            "--redact-path", "tools/call:login $.params.arguments.password")
    assert len(corpus.secrets) >= 20
    assert leaks(db.parent, corpus) == {}
    sessions, calls = shape_of(db)
    assert sessions == [("streamable-http",)]
    assert [c for c in calls if c[0] == "tools/call"] == EXPECTED_TOOLS
    # Structure is kept: schemes, cookie names, parameter names, plain tool traffic.
    headers = " ".join(h for (h,) in q(db, "SELECT request_headers FROM exchanges"))
    assert "Bearer redacted:token:" in headers and "session=redacted:cookie:" in headers
    urls = " ".join(u for (u,) in q(db, "SELECT url FROM exchanges"))
    assert "access_key=redacted:token:" in urls and "X-Amz-Signature=redacted:token:" in urls
    locations = " ".join(h for (h,) in q(db, "SELECT response_headers FROM exchanges "
                                               "WHERE status = 302"))
    assert "code=redacted:token:" in locations and "state=redacted:token:" in locations
    assert q(db, "SELECT count(*) FROM messages WHERE json LIKE '%plain words stay%'")[0][0] == 2
    assert q(db, "SELECT value FROM meta WHERE key = 'redaction'") == [("hmac-sha256 pseudonyms",)]


def test_ssetap_redact_makes_a_raw_capture_of_the_corpus_shareable(record, tmp_path: Path,
                                                                   capsys) -> None:
    raw, corpus = run_corpus(record, tmp_path, "raw", "--raw")
    found = leaks(raw.parent, corpus)
    assert "header X-Auth" in found and "code_verifier" in found  # the test can fail
    out = tmp_path / "shared" / "capture.db"
    out.parent.mkdir()
    assert main(["redact", str(raw), str(out),
                 "--redact-path", "tools/call:login $.params.arguments.password"]) == 0
    assert leaks(out.parent, corpus) == {}
    assert shape_of(out) == shape_of(raw)
    assert [c for c in shape_of(out)[1] if c[0] == "tools/call"] == EXPECTED_TOOLS
    for table in ("exchanges", "streams", "chunks", "sse_events", "messages", "calls"):
        assert q(out, f"SELECT count(*) FROM {table}") == q(raw, f"SELECT count(*) FROM {table}")
    assert q(out, "SELECT value FROM meta WHERE key = 'redaction'") == [("hmac-sha256 pseudonyms",)]
    # Raw chunks keep their offsets: each stream's bytes are as long as before.
    sizes = "SELECT stream_id, sum(length(data)) FROM chunks GROUP BY stream_id ORDER BY 1"
    assert q(out, sizes) == q(raw, sizes)
