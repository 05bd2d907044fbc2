"""An mcp>=2 server and client, run with an interpreter that has mcp 2 (not ssetap's venv).

    python mcp2_peer.py server [sse|streamable-http]   prints "PORT <n>", serves until killed
    python mcp2_peer.py client URL                     runs a short script, prints "OK ..."
"""


import asyncio
import socket
import sys


def serve(transport: str) -> None:
    import uvicorn
    from mcp.server.mcpserver import (
        Context,
        MCPServer,
    )

    globals()["Context"] = Context  # the SDK evaluates tool annotations in module globals

    server = MCPServer("mcp2-peer", version="2.0.0")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def countdown(n: int, ctx: Context) -> str:
        """Report progress n times."""
        for i in range(n):
            await ctx.report_progress(i + 1, n)
            await asyncio.sleep(0.02)
        return "liftoff"

    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # NODELAY
    sock.bind(("127.0.0.1", 0))
    print("PORT", sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


async def client(url: str) -> None:
    from mcp import Client

    async with Client(url) as c:
        tools = await c.list_tools()
        added = await c.call_tool("add", {"a": 2, "b": 3})
        progress: list[float] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            progress.append(p)

        done = await c.call_tool("countdown", {"n": 3}, progress_callback=on_progress)
        print("OK", sorted(t.name for t in tools.tools), added.content[0].text,
              done.content[0].text, len(progress), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2] if len(sys.argv) > 2 else "streamable-http")
    else:
        asyncio.run(client(sys.argv[2]))
