"""Demo MCP server on the installed official Python SDK (v1 FastMCP or v2 MCPServer), on loopback.

The two generations share the decorator API (`tool`, `resource`, `prompt`) and the `Context`
methods the demo uses, so one definition of the tools serves both; `recorder.sdk` says which
generation is installed, and only the construction of the server and its ASGI apps differs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, Literal, get_args

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.types import ASGIApp

from recorder import sdk
from recorder.asgi_thread import AppServer, AppServerError
from recorder.listen import is_loopback

# The SDK resolves tool annotations (the injected `Context`) in this module's globals, so the
# generation's Context class must be bound here under that name.
if sdk.generation() >= 2:
    from mcp.server.mcpserver import (  # type: ignore[import-not-found,unused-ignore]
        Context,
        MCPServer,
    )
else:
    from mcp.server.fastmcp import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        Context,
        FastMCP,
    )

Transport = Literal["sse", "streamable-http"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)

# Hosts FastMCP already allows when it auto-enables DNS-rebinding protection for 127.0.0.1.
_DEFAULT_ALLOWED = ("127.0.0.1", "localhost", "::1")

# How long in-flight handlers get after stop() before uvicorn cancels them. Streams are cut
# at once (see ServerHandle.stop); only handlers that ignore disconnects (json_response POSTs
# waiting on hang()) ever use this.
_SHUTDOWN_GRACE = 1  # uvicorn types this as int seconds


def build_server(*, json_response: bool = False, stateless: bool = False) -> Any:
    """Build the demo server (FastMCP on SDK v1, MCPServer on v2).

    `json_response` and `stateless` are FastMCP constructor options in v1; in v2 they are options
    of `streamable_http_app`, which `start_server` passes.

    Error shapes (SDK v1.x), which matter to a recorder:
    - `fail` raises inside a tool: the client gets a normal JSON-RPC *result* with `isError: true`.
    - An unknown tool name is also an `isError: true` result, not a JSON-RPC error: FastMCP raises
      ToolError and the low-level call_tool handler turns every exception into an error result.
    - Real JSON-RPC errors: `resources/read` of an unknown URI (e.g. `demo://missing`) answers
      `{"error": {"code": 0, "message": "Unknown resource: ..."}}` (v1 uses code 0 for handler
      exceptions), and any method without a handler, e.g. `completion/complete`, answers
      `-32601 Method not found`.
    """
    # FastMCP.__init__ calls logging.basicConfig (a Rich handler at INFO on the root logger). A
    # handler already on root makes that a no-op, so the host process keeps its own logging setup.
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    instructions = "Demo server for ssetap: echo, add, countdown, slow, fail, hang."
    try:
        if sdk.generation() >= 2:
            mcp = MCPServer("ssetap-demo", instructions=instructions)
        else:
            # host stays at its 127.0.0.1 default so FastMCP turns on DNS-rebinding protection.
            mcp = FastMCP("ssetap-demo", instructions=instructions,
                          json_response=json_response, stateless_http=stateless)
    finally:
        root.removeHandler(placeholder)

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool()
    async def countdown(  # FastMCP injects ctx by its annotation
        ctx: Context,  # type: ignore[type-arg,unused-ignore]
        n: int = 5,
        delay: float = 0.1,
    ) -> str:
        """Send n progress notifications, delay seconds apart, then return "liftoff"."""
        await ctx.info(f"countdown from {n}")
        for i in range(n):
            await ctx.report_progress(i + 1, n, f"T-{n - i}")
            await anyio.sleep(delay)
        return "liftoff"

    @mcp.tool()
    async def slow(seconds: float = 1.0) -> str:
        """Sleep, then return."""
        await anyio.sleep(seconds)
        return f"slept {seconds}s"

    @mcp.tool()
    def fail(message: str = "boom") -> str:
        """Always raise; the client sees an isError tool result."""
        raise RuntimeError(message)

    @mcp.tool()
    async def hang() -> str:
        """Never return (for client timeout and cancellation scenarios)."""
        await anyio.Event().wait()
        return "unreachable"

    @mcp.resource("demo://readme", name="readme", mime_type="text/plain")
    def readme() -> str:
        """A short text resource."""
        return "ssetap demo server: tools echo, add, countdown, slow, fail, hang."

    @mcp.prompt()
    def greet(name: str) -> str:
        """Greet someone by name."""
        return f"Please greet {name} warmly."

    return mcp


class _ThreadPingInterval:
    """Non-data descriptor standing in for EventSourceResponse.DEFAULT_PING_INTERVAL.

    The SDK builds EventSourceResponse without a `ping` argument, so the class attribute (read in
    __init__ as self.DEFAULT_PING_INTERVAL) is the only knob. It is process-global; keying it on the
    thread lets each demo server (one thread and loop each) have its own interval without leaking a
    0.2 s heartbeat into other servers in the same test process.
    """

    def __init__(self, default: float) -> None:
        self.default = default
        self._local = threading.local()

    def set_for_current_thread(self, value: float | None) -> None:
        self._local.value = value

    def __get__(self, instance: object, owner: type | None = None) -> float:
        value: float | None = getattr(self._local, "value", None)
        return self.default if value is None else value


_ping_lock = threading.Lock()


def _ping_override() -> _ThreadPingInterval:
    with _ping_lock:
        current = EventSourceResponse.__dict__.get("DEFAULT_PING_INTERVAL")
        if isinstance(current, _ThreadPingInterval):
            return current
        # Keep whatever global value is in force (15 by default) for every other thread.
        override = _ThreadPingInterval(EventSourceResponse.DEFAULT_PING_INTERVAL)
        EventSourceResponse.DEFAULT_PING_INTERVAL = override  # type: ignore[assignment]
        return override


def _check_loopback(host: str) -> None:
    if not is_loopback(host):
        raise ValueError(f"demo server binds loopback only; {host!r} is not a loopback address")


def _apps_v1(mcp: Any, transport: Transport, *, host: str, json_response: bool,
             stateless: bool) -> ASGIApp:
    security = mcp.settings.transport_security
    if security is not None and host not in _DEFAULT_ALLOWED:
        # Another loopback address (127.0.0.2...) keeps protection on but must accept its own Host.
        security.allowed_hosts.append(f"{host}:*")
        security.allowed_origins.append(f"http://{host}:*")
    app: ASGIApp = mcp.sse_app() if transport == "sse" else mcp.streamable_http_app()
    return app


def _apps_v2(mcp: Any, transport: Transport, *, host: str, json_response: bool,
             stateless: bool) -> ASGIApp:
    from mcp.server.transport_security import TransportSecuritySettings

    # The same DNS-rebinding protection v2 turns on by itself for 127.0.0.1, extended to the
    # loopback address actually bound (127.0.0.2...).
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    if host not in _DEFAULT_ALLOWED:
        hosts.append(f"{host}:*")
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts])
    if transport == "sse":
        app: ASGIApp = mcp.sse_app(transport_security=security)
    else:
        app = mcp.streamable_http_app(json_response=json_response, stateless_http=stateless,
                                      transport_security=security)
    return app


class ServerHandle(AppServer):
    """A demo server running under uvicorn in a background thread with its own event loop."""

    def __init__(self, app: ASGIApp, *, transport: Transport, host: str, port: int,
                 ping_interval: float | None) -> None:
        super().__init__(app, host=host, port=port, lifespan="on",
                         name=f"demo-mcp-{transport}", graceful_seconds=_SHUTDOWN_GRACE)
        self.transport: Transport = transport
        self.mcp_url = self.url + ("/sse" if transport == "sse" else "/mcp")
        self._ping_interval = ping_interval

    def on_thread_start(self) -> None:
        if self._ping_interval is not None:
            _ping_override().set_for_current_thread(self._ping_interval)

    def stop(self, timeout: float = 5.0) -> None:
        """Shut down promptly, cutting open streams and in-flight responses; idempotent."""
        super().stop(timeout)
        if self.running:
            raise RuntimeError(f"demo server thread {self.thread.name} did not stop")

    def __repr__(self) -> str:
        return f"ServerHandle({self.transport!r}, {self.mcp_url!r}, running={self.running})"


def start_server(
    transport: Transport,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    json_response: bool = False,
    stateless: bool = False,
    ping_interval: float | None = None,
) -> ServerHandle:
    """Start the demo server in a background thread and return once it accepts connections."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; expected one of {TRANSPORTS}")
    _check_loopback(host)
    if ping_interval is not None and ping_interval < 0:
        raise ValueError(
            "ping_interval must be >= 0 (0 disables heartbeats, None keeps the default)"
        )

    mcp = build_server(json_response=json_response, stateless=stateless)
    # Each server builds one StreamableHTTPSessionManager, whose run() works only once: hence a
    # fresh server per start.
    app: ASGIApp = (_apps_v2 if sdk.generation() >= 2 else _apps_v1)(
        mcp, transport, host=host, json_response=json_response, stateless=stateless)

    handle = ServerHandle(app, transport=transport, host=host, port=port,
                          ping_interval=ping_interval)
    try:
        handle.start(timeout=10.0)
    except AppServerError as exc:
        raise RuntimeError(f"demo server: {exc}") from None
    return handle


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo server in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m recorder.demo_server", description=__doc__)
    parser.add_argument("--transport", choices=TRANSPORTS, default="streamable-http")
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--json-response", action="store_true", help="streamable-http: answer POSTs with JSON"
    )
    parser.add_argument("--stateless", action="store_true", help="streamable-http: no sessions")
    parser.add_argument(
        "--ping-interval", type=float, default=None, help="SSE heartbeat seconds (default 15)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        handle = start_server(
            args.transport,
            host=args.host,
            port=args.port,
            json_response=args.json_response,
            stateless=args.stateless,
            ping_interval=args.ping_interval,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    print(handle.mcp_url, flush=True)
    try:
        # join() with a timeout keeps the main thread responsive to signals.
        while handle.running:
            handle.thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
