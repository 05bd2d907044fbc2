"""Runs mitmproxy in-process with the ssetap addon: the engine behind `ssetap record`."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from recorder import listen, wire
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
    redact_paths: str = ""  # rules, one `[METHOD[:NAME]] PATH` a line
    proxy_auth: str | None = None  # mitmproxy's proxyauth spec (regular mode)
    allow_upstream: tuple[tuple[str, int], ...] = ()  # regular mode: where it may forward
    faults: str = ""  # recorder.faults.FaultConfig as JSON; "" = no fault injection
    max_backlog: int = wire.DEFAULT_MAX_BACKLOG
    max_lag: float = wire.DEFAULT_MAX_LAG
    stop_timeout: float = wire.DEFAULT_STOP_TIMEOUT
    otlp: str = ""  # recorder.otlp_push.PushOptions as JSON, "" for no live push


# `record`'s exit status when the capture is not complete (shed, lost or unwritten data).
EXIT_INCOMPLETE = 3


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


class _UpstreamGuard:
    """Regular mode: refuse CONNECT and requests to anything not in `--allow-upstream`, so a
    proxy reachable from the network is no tunnel into this machine's loopback services."""

    def __init__(self, allow: tuple[tuple[str, int], ...]) -> None:
        self.allow = allow

    def _refuse(self, flow: Any) -> None:
        from mitmproxy import http

        if flow.response is not None:
            return  # proxyauth already answered 407
        request = flow.request
        if not listen.upstream_allowed(request.host, request.port, self.allow):
            flow.response = http.Response.make(
                403, f"ssetap: {request.host}:{request.port} is not an allowed upstream "
                "(--allow-upstream)\n".encode(), {"content-type": "text/plain"})

    def http_connect(self, flow: Any) -> None:
        self._refuse(flow)

    def requestheaders(self, flow: Any) -> None:
        self._refuse(flow)


class _ConsoleLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio" and record.exc_info \
                and isinstance(record.exc_info[1], asyncio.CancelledError):
            return  # a connection's task cancelled as asyncio tears the proxy down at exit
        print(f"ssetap: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def run_proxy(config: ProxyConfig) -> int:
    """Run until SIGINT/SIGTERM, then stop within the stop timeout: 0 for a complete
    capture, 3 (EXIT_INCOMPLETE) when something was shed or lost, 2 if it could not listen."""
    check_port_free(config.listen_host, config.listen_port)
    handler = _ConsoleLog(logging.ERROR if config.quiet else logging.WARNING)
    logging.getLogger().addHandler(handler)
    recorder = Recorder()
    try:
        failed = asyncio.run(_run(config, recorder))
    finally:
        # Here, once the event loop is gone, not in the `done` hook: the proxy's connections
        # go on forwarding until asyncio tears them down, after `done`, and what they forward
        # then is recorded too (or, past the stop timeout, counted as a `stopped` gap).
        # A second Ctrl-C or SIGTERM while it stops must not cut the capture short (asyncio
        # put the default handlers back): the stop is bounded anyway.
        ignored = _ignore_stop_signals()
        try:
            recorder.stop()  # bounded by the stop timeout, whatever the worker is doing
        finally:
            for sig, previous in ignored.items():
                signal.signal(sig, previous)
            logging.getLogger().removeHandler(handler)
    if failed:
        return 2
    outcome = recorder.outcome
    return 0 if outcome is None or outcome.complete else EXIT_INCOMPLETE


def _ignore_stop_signals() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}


async def _run(config: ProxyConfig, recorder: Recorder) -> bool:
    """Run the proxy until it is told to stop; whether it failed to listen."""
    from mitmproxy import options
    from mitmproxy.tools.dump import DumpMaster

    mode = [f"reverse:{config.upstream}"] if config.mode == "reverse" else ["regular"]
    opts = options.Options(listen_host=config.listen_host, listen_port=config.listen_port,
                           mode=mode)
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    announcer = _Announcer(config)
    master.addons.add(recorder, announcer)
    if config.mode == "regular" and config.allow_upstream:
        master.addons.add(_UpstreamGuard(config.allow_upstream))
    if config.faults:
        # After the recorder, so it records requests as they arrived and the bytes as the
        # client got them (the fault filter runs in front of its tap).
        from recorder.fault_addon import FaultInjector

        master.addons.add(FaultInjector())
    # Lazy connections: a dead upstream then answers the client's request with a 502 (which
    # is recorded as a failed exchange) instead of dropping the client's connection.
    settings: dict[str, Any] = {"ssetap_db": config.db, "ssetap_raw": config.raw,
                                "ssetap_checks": config.checks, "connection_strategy": "lazy",
                                "ssetap_redact_paths": config.redact_paths,
                                "ssetap_max_backlog": config.max_backlog,
                                "ssetap_max_lag_ms": max(1, round(config.max_lag * 1000)),
                                "ssetap_stop_timeout_ms": max(1, round(config.stop_timeout * 1000)),
                                "ssetap_otlp": config.otlp}
    if config.mode == "reverse":
        # Keep the client's Host (Origin is never rewritten), so the upstream's own
        # DNS-rebinding defence still sees what the client sent.
        settings["keep_host_header"] = True
    if config.proxy_auth:
        settings["proxyauth"] = config.proxy_auth
    if config.faults:
        settings["ssetap_faults"] = config.faults
    master.options.update(**settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    await master.run()
    return announcer.failed
