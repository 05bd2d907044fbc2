"""`ssetap serve` checks Host and Origin like the SDK servers (DNS rebinding): 421 and 403."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from recorder.cli import main
from replay.host_guard import HostRules
from replay.mock_server import serve_capture
from replay.plan import FAST

ROOT = Path(__file__).resolve().parent.parent.parent
CAPTURE = ROOT / "sample_captures" / "streamable-sse.db"

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "t", "version": "1"}}}
ACCEPT = {"accept": "application/json, text/event-stream"}


@pytest.mark.parametrize(("host", "origin", "refusal"), [
    ("127.0.0.1:9000", None, None),
    ("localhost:9000", "http://localhost:3000", None),
    ("[::1]:9000", "http://[::1]:9000", None),
    ("evil.example", None, 421),
    ("evil.example:9000", None, 421),
    ("127.0.0.1.evil.example:9000", None, 421),
    ("127.0.0.1:9000", "http://evil.example", 403),
    ("127.0.0.1:9000", "http://127.0.0.1.evil.example:80", 403),
    (None, None, 421),
])
def test_loopback_rules(host: str | None, origin: str | None, refusal: int | None) -> None:
    result = HostRules.for_listener("127.0.0.1").check(host, origin)
    assert (result[0] if result else None) == refusal


def test_allowed_hosts_and_origins_extend_the_rules() -> None:
    rules = HostRules.for_listener("127.0.0.1", ["mcp.test", "other.test:8443"],
                                   ["http://app.test:3000"])
    assert rules.check("mcp.test:1234", None) is None
    assert rules.check("other.test:8443", None) is None
    assert rules.check("other.test:8444", None) == (421, "Invalid Host header")
    assert rules.check("mcp.test:1", "http://app.test:3000") is None
    assert rules.check("mcp.test:1", "http://app.test:3001") == (403, "Invalid Origin header")


def test_serve_refuses_a_foreign_host_and_origin() -> None:
    mock = serve_capture(str(CAPTURE), timing=FAST)
    try:
        with httpx.Client(trust_env=False, timeout=10) as client:
            ok = client.post(mock.mcp_url, json=INITIALIZE, headers=ACCEPT)
            host = client.post(mock.mcp_url, json=INITIALIZE,
                               headers={**ACCEPT, "host": "evil.example"})
            origin = client.post(mock.mcp_url, json=INITIALIZE,
                                 headers={**ACCEPT, "origin": "http://evil.example"})
            legacy = client.get(mock.sse_url, headers={"host": "evil.example:80"})
        assert ok.status_code == 200
        assert (host.status_code, origin.status_code, legacy.status_code) == (421, 403, 421)
        assert "result" not in host.text and "result" not in origin.text
        assert mock.guard.refused == 3
    finally:
        mock.stop()


def test_serve_will_not_listen_on_the_network_unless_asked(capsys) -> None:
    assert main(["serve", str(CAPTURE), "--listen", "0.0.0.0:0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--allow-remote" in err and "\n" not in err
