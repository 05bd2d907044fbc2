"""Who ssetap lets in: listen rules, the allow-list of a regular proxy, Host kept in reverse mode.

Everything stays on this machine: a listener may bind 0.0.0.0, but the test connects through
127.0.0.1 only, from 127.0.0.2 to play a network peer.
"""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import httpx
import pytest

from recorder.asgi_thread import AppServer
from recorder.cli import main
from recorder.compat import smuggling_risk
from recorder.listen import ListenError, check_exposure, is_loopback, upstream_allowed
from tests.conftest import RawServer
from tests.recorder.capture_query import q

PEER = "127.0.0.2"  # a second loopback address, playing a host on the network


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# --- The rules (pure) ----------------------------------------------------------------------


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))


def test_exposure_rules() -> None:
    assert check_exposure("127.0.0.1", mode="regular", allow_remote=False, proxy_auth=False,
                          allow=()) is None
    with pytest.raises(ListenError, match="--allow-remote"):
        check_exposure("0.0.0.0", mode="reverse", allow_remote=False, proxy_auth=False, allow=())
    with pytest.raises(ListenError, match="--proxy-auth"):
        check_exposure("0.0.0.0", mode="regular", allow_remote=True, proxy_auth=False,
                       allow=(("127.0.0.1", 80),))
    with pytest.raises(ListenError, match="--allow-upstream"):
        check_exposure("0.0.0.0", mode="regular", allow_remote=True, proxy_auth=True, allow=())
    warning = check_exposure("0.0.0.0", mode="regular", allow_remote=True, proxy_auth=True,
                             allow=(("127.0.0.1", 80),))
    assert warning is not None and "127.0.0.1:80" in warning
    assert upstream_allowed("127.0.0.1", 80, (("127.0.0.1", 80),))
    assert not upstream_allowed("127.0.0.1", 81, (("127.0.0.1", 80),))


# --- record refuses to expose itself unless asked ------------------------------------------


@pytest.mark.parametrize("args", [
    ["--upstream", "http://127.0.0.1:9"],
    ["--mode", "regular", "--allow-remote"],
    ["--mode", "regular", "--allow-remote", "--proxy-auth", "u:p"],
    ["--mode", "regular", "--allow-remote", "--allow-upstream", "127.0.0.1:9"],
    ["--mode", "regular", "--allow-remote", "--proxy-auth", "any",
     "--allow-upstream", "127.0.0.1:9"],
])
def test_a_network_listen_is_refused_without_its_opt_ins(tmp_path: Path, capsys, args) -> None:
    db = tmp_path / "c.db"
    assert main(["record", "--listen", "0.0.0.0:0", "--db", str(db), *args]) == 2
    assert one_line_error(capsys).startswith("ssetap: error:")
    assert not db.exists()


def _raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(PEER, 0)) as sock:
        sock.sendall(data)
        answer = sock.recv(65536)
        if answer.startswith(b"HTTP/1.1 200") and b"content-length: 5" in answer.lower():
            while not answer.endswith(b"hello"):  # the body may come in its own packet
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        return answer


def _loopback_service() -> tuple[socket.socket, int]:
    """A loopback-only service that must never be reachable through the proxy."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, server.getsockname()[1]


async def _hello(method: str, path: str, headers: dict[str, str], body: bytes, writer) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello")
    await writer.drain()


@pytest.mark.skipif(smuggling_risk() is not None, reason="on h11 < 0.16 (Python 3.11) no "
                    "opt-in opens a network listener (recorder/compat.py)")
def test_an_opted_in_regular_proxy_needs_auth_and_forwards_only_to_its_allow_list(
        record, tmp_path: Path) -> None:
    allowed = RawServer(_hello)
    secret_service, secret_port = _loopback_service()
    try:
        rec = record(None, "--mode", "regular", "--listen", "0.0.0.0:0", "--allow-remote",
                     "--proxy-auth", "ann:s3cret-pass", "--allow-upstream",
                     f"127.0.0.1:{allowed.port}", db=tmp_path / "c.db")
        assert "0.0.0.0" in rec.url and "reachable from the network" in rec.output
        port = int(rec.url.rsplit(":", 1)[1])
        auth = "Proxy-Authorization: Basic " + base64.b64encode(b"ann:s3cret-pass").decode()
        # No credentials: 407, wherever the client wanted to go.
        answer = _raw_request(port, f"CONNECT 127.0.0.1:{allowed.port} HTTP/1.1\r\n"
                                    f"Host: 127.0.0.1:{allowed.port}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 407")
        # Credentials, but a port outside the allow-list: refused, never tunnelled.
        for method in ("CONNECT", "GET"):
            target = (f"127.0.0.1:{secret_port}" if method == "CONNECT"
                      else f"http://127.0.0.1:{secret_port}/")
            answer = _raw_request(port, f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:"
                                        f"{secret_port}\r\n{auth}\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 403"), answer
        secret_service.settimeout(0.5)
        with pytest.raises(TimeoutError):
            secret_service.accept()  # nothing ever connected to it
        # Credentials and an allowed upstream: forwarded.
        answer = _raw_request(port, f"GET http://127.0.0.1:{allowed.port}/ HTTP/1.1\r\n"
                                    f"Host: 127.0.0.1:{allowed.port}\r\n{auth}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")
        assert rec.stop() == 0  # before the upstream, so its kept-alive connection ends first
    finally:
        secret_service.close()
        allowed.stop()
    # The proxy password is a credential like any other: not in the capture.
    assert b"s3cret-pass" not in (tmp_path / "c.db").read_bytes()


# --- Reverse mode keeps the client's Host, so the upstream's rebinding defence works -------


def sdk_server() -> AppServer:
    """The installed SDK's own server on 127.0.0.1, with its DNS-rebinding protection on (both
    generations turn it on for a loopback host: `TransportSecuritySettings`)."""
    try:
        from mcp.server.fastmcp import FastMCP
    except ImportError:  # mcp 2
        from mcp.server.mcpserver import MCPServer

        app = MCPServer("guarded").streamable_http_app(host="127.0.0.1")
    else:
        app = FastMCP("guarded").streamable_http_app()
    return AppServer(app, lifespan="on", name="guarded-sdk-server").start()


def test_reverse_mode_keeps_host_and_origin_for_the_sdk_servers_rebinding_defence(
        record, tmp_path: Path) -> None:
    server = sdk_server()
    try:
        _host_and_origin_through(record, server, tmp_path)
    finally:
        server.stop()


def _host_and_origin_through(record, server: AppServer, tmp_path: Path) -> None:
    mcp_url = server.url + "/mcp"
    rec = record(server.url, db=tmp_path / "c.db")
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"accept": "application/json, text/event-stream"}
    with httpx.Client(trust_env=False, timeout=10) as client:
        # Directly, the SDK server refuses a foreign Host with 421 and a foreign Origin with 403.
        direct_host = client.post(mcp_url, json=initialize,
                                  headers={**accept, "host": "evil.example"})
        direct_origin = client.post(mcp_url, json=initialize,
                                    headers={**accept, "origin": "http://evil.example"})
        assert (direct_host.status_code, direct_origin.status_code) == (421, 403)
        # Through ssetap the same refusals reach the client.
        proxied_host = client.post(f"{rec.url}/mcp", json=initialize,
                                   headers={**accept, "host": "evil.example"})
        proxied_origin = client.post(f"{rec.url}/mcp", json=initialize,
                                     headers={**accept, "origin": "http://evil.example"})
        assert (proxied_host.status_code, proxied_origin.status_code) == (421, 403)
        # And a client that names the proxy as its host is served as before.
        ok = client.post(f"{rec.url}/mcp", json=initialize, headers=accept)
        assert ok.status_code == 200
    assert rec.stop() == 0
    statuses = sorted(s for (s,) in q(tmp_path / "c.db", "SELECT status FROM exchanges"))
    assert statuses == [200, 403, 421]
