"""An mcp>=2 server with a tool that hangs, and a client that gives up on it after 0.5 s.

Run with an interpreter that has mcp 2 (not ssetap's venv on Python 3.11):

    python cancel_peer.py server [sse|streamable-http]   prints "PORT <n>", serves until killed
    python cancel_peer.py client URL [ARGS_JSON]         call_tool("hang", timeout 0.5 s)

The client gives up after 0.5 s, the way fastmcp's `call_tool(..., timeout=0.5)` does. How
it tells the server depends on the version negotiated: on 2026-07-28 it closes the response
stream; against an older server (ssetap's demo server on mcp 1.x, 2025-11-25) it sends
`notifications/cancelled` with its reason.
"""


import asyncio
import socket
import sys


def serve(transport: str) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("cancel-peer", version="2.0.0")

    @server.tool()
    async def hang(seconds: float = 30.0) -> str:
        """Sleep for a long time (the client cancels first)."""
        await asyncio.sleep(seconds)
        return "woke up"

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print("PORT", sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


async def client(url: str, arguments: dict[str, object]) -> None:
    from mcp import Client

    async with Client(url) as c:
        try:
            await c.call_tool("hang", arguments, read_timeout_seconds=0.5)
            outcome = "answered"
        except Exception as exc:  # the SDK raises on its own timeout
            outcome = type(exc).__name__
        added = await c.call_tool("add", {"a": 2, "b": 3})  # the session goes on
        await asyncio.sleep(0.5)
        print("OK", outcome, added.content[0].text, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2] if len(sys.argv) > 2 else "streamable-http")
    else:
        import json

        asyncio.run(client(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3
                           else {"seconds": 30.0}))
