"""Run an ASGI app under uvicorn in a background thread, on a pre-bound loopback-safe socket.

Shared by the demo server, the mock server of `ssetap serve`, tests and benchmarks. The socket
is bound before uvicorn starts, so port 0 yields a real port with no race; `stop()` is prompt
even with open SSE streams, which uvicorn's graceful shutdown would otherwise wait on forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any, Literal, Self

import uvicorn


class AppServerError(RuntimeError):
    """The server could not bind, or did not start."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; `localhost` means 127.0.0.1 (never a ::1 surprise)."""
    bind_host = "127.0.0.1" if host == "localhost" else host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it every small SSE event after the response head waits ~40 ms (Nagle against the
    # client's delayed ACK), which distorts latency and re-streamed timing alike.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind_host, port))
        # Listening before uvicorn starts means early connects queue instead of being refused.
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise AppServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class AppServer:
    """An ASGI app under uvicorn in a background thread with its own event loop."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 lifespan: Literal["auto", "on", "off"] = "off", name: str = "ssetap-http",
                 graceful_seconds: int = 1) -> None:
        self._sock = bind(host, port)
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan,
                                timeout_graceful_shutdown=graceful_seconds)
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-{self.port}",
                                        daemon=True)

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def on_thread_start(self) -> None:
        """Runs first in the server's thread (per-thread settings); nothing by default."""

    def _run(self) -> None:
        self.on_thread_start()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[self._sock])

        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced by start(); the thread must not die silently
            self._error = exc
        finally:
            self._sock.close()

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; returns once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise AppServerError(f"the server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise AppServerError(f"the server did not start within {timeout:g} s")
            time.sleep(0.01)
        return self

    def _drop_connections(self) -> None:
        # Runs on the server loop. Closing every transport looks to the app like all clients
        # disconnecting, so SSE responses end cleanly; open streams never finish on their own.
        self._server.should_exit = True
        for connection in list(self._server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop promptly, cutting open streams and in-flight responses; idempotent."""
        if not self._thread.is_alive():
            self._sock.close()
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._drop_connections)
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            # Skips waiting on connections/tasks and the lifespan shutdown.
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self if self._thread.is_alive() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
