"""The HTTP-stack seam: which listeners each stack may open, and the smuggling it guards against."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from recorder.cli import main
from recorder.compat import refuse_exposed_listen, smuggling_risk
from recorder.listen import is_loopback


@pytest.mark.parametrize(("h11", "risky"), [
    ("0.14.0", True), ("0.15.0", True), ("0.16.0", False), ("0.16.1.dev0", False), ("1.0", False),
])
def test_h11_releases_with_the_chunked_leniency(h11: str, risky: bool) -> None:
    assert (smuggling_risk(h11) is not None) is risky


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.10", False), ("example.test", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (refuse_exposed_listen(host, "0.14.0") is None) is loopback
    assert refuse_exposed_listen(host, "0.16.0") is None


def test_refusal_names_the_reason_and_the_fix() -> None:
    message = refuse_exposed_listen("0.0.0.0", "0.14.0")
    assert message is not None and "\n" not in message
    assert "CVE-2025-43859" in message and "Python 3.12+" in message and "127.0.0.1" in message


@pytest.mark.skipif(smuggling_risk() is None, reason="this stack has h11 0.16+")
def test_record_refuses_an_exposed_listener_on_a_lenient_stack(capsys, tmp_path) -> None:
    code = main(["record", "--upstream", "http://127.0.0.1:9", "--listen", "0.0.0.0:0",
                 "--db", str(tmp_path / "c.db")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert "refusing to listen on 0.0.0.0" in err and "CVE-2025-43859" in err
    assert not (tmp_path / "c.db").exists()


SMUGGLE = (b"POST /one HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nAAAAAXX2\r\n45\r\n0\r\n\r\n"
           b"GET /two-smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")


@pytest.mark.skipif(smuggling_risk() is not None,
                    reason="h11 < 0.16 is lenient; on this stack listeners stay loopback")
def test_a_chunked_smuggling_attempt_does_not_reach_the_upstream(record, raw_server) -> None:
    seen: list[str] = []

    async def responder(method, path, headers, body, writer: asyncio.StreamWriter) -> None:
        seen.append(path)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server = raw_server(responder)
    rec = record(server.url)
    host, port = rec.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(SMUGGLE)
        sock.settimeout(5)
        try:
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass
    time.sleep(0.5)
    assert "/two-smuggled" not in seen, seen
