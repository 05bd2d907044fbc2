"""Runs mitmproxy in-process with the ssetap addon: the engine behind `ssetap record`."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from recorder import listen
from recorder.addon import Recorder


class ProxyError(Exception):
    """The proxy could not start (bad address, busy port, bad upstream)."""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    db: str
    listen_host: str
    listen_port: int
    mode: str  # "reverse" or "regular"
    upstream: str | None
    raw: bool = False
    checks: str = "{}"
    quiet: bool = False
    otlp: str = ""  # recorder.otlp_push.PushOptions as JSON, "" for no live push


def parse_listen(value: str) -> tuple[str, int]:
    try:
        return listen.parse_listen(value)
    except ValueError as exc:
        raise ProxyError(str(exc)) from None


def parse_upstream(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyError(f"--upstream needs an http(s) URL like http://127.0.0.1:8000, got {value!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ProxyError(
            f"--upstream takes the server's base URL ({parts.scheme}://{parts.netloc}); the path "
            f"{parts.path!r} is kept by the client, which you point at the proxy instead"
        )
    try:
        _ = parts.port  # raises on a port out of range
    except ValueError:
        raise ProxyError(f"--upstream has a bad port: {value!r}") from None
    return f"{parts.scheme}://{parts.netloc}"


def check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ProxyError(f"cannot listen on {host}:{port}: the port is busy") from None
            raise ProxyError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


class _Announcer:
    """Says where the proxy listens once it does (port 0 becomes a real port here)."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.failed = False

    def running(self) -> None:
        from mitmproxy import ctx

        addrs = ctx.master.addons.get("proxyserver").listen_addrs()
        if not addrs:
            self.failed = True
            print(f"ssetap: error: could not listen on "
                  f"{self.config.listen_host}:{self.config.listen_port}", file=sys.stderr)
            ctx.master.shutdown()
            return
        host, port = addrs[0][:2]
        shown = f"[{host}]" if ":" in host else host
        target = f" -> {self.config.upstream}" if self.config.mode == "reverse" else " (regular proxy)"
        print(f"ssetap: listening on http://{shown}:{port}{target}; recording into "
              f"{self.config.db}", file=sys.stderr, flush=True)


class _ConsoleLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(f"ssetap: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def run_proxy(config: ProxyConfig) -> int:
    """Run until SIGINT/SIGTERM; everything recorded is flushed before returning 0."""
    check_port_free(config.listen_host, config.listen_port)
    return asyncio.run(_run(config))


async def _run(config: ProxyConfig) -> int:
    from mitmproxy import options
    from mitmproxy.tools.dump import DumpMaster

    mode = [f"reverse:{config.upstream}"] if config.mode == "reverse" else ["regular"]
    opts = options.Options(listen_host=config.listen_host, listen_port=config.listen_port,
                           mode=mode)
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    handler = _ConsoleLog(logging.ERROR if config.quiet else logging.WARNING)
    logging.getLogger().addHandler(handler)
    announcer = _Announcer(config)
    master.addons.add(Recorder(), announcer)
    # Lazy connections: a dead upstream then answers the client's request with a 502 (which
    # is recorded as a failed exchange) instead of dropping the client's connection.
    settings: dict[str, Any] = {"ssetap_db": config.db, "ssetap_raw": config.raw,
                                "ssetap_checks": config.checks, "ssetap_otlp": config.otlp,
                                "connection_strategy": "lazy"}
    master.options.update(**settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    try:
        await master.run()
    finally:
        logging.getLogger().removeHandler(handler)
    return 2 if announcer.failed else 0
