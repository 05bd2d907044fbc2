"""An mcp>=2 server and client for the secrets corpus, run with an interpreter that has mcp 2.

    python mcp2_secrets_peer.py server          prints "PORT <n>", serves until killed
    python mcp2_secrets_peer.py client URL      reads {"headers", "query", "echo"} as JSON on
                                                stdin, sends them, prints "OK <echoed?>"
"""

import asyncio
import json
import socket
import sys
from urllib.parse import urlencode


def serve() -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("mcp2-secrets-peer", version="2.0.0")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    app = server.streamable_http_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print("PORT", sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


async def client(url: str, corpus: dict) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    target = f"{url}?{urlencode(corpus['query'])}"
    async with httpx2.AsyncClient(headers=corpus["headers"], trust_env=False) as http:
        async with Client(streamable_http_client(target, http_client=http)) as c:
            echoed = await c.call_tool("echo", {"text": corpus["echo"]})
            plain = await c.call_tool("echo", {"text": "plain words stay"})
    print("OK", echoed.content[0].text == corpus["echo"], plain.content[0].text, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    else:
        asyncio.run(client(sys.argv[2], json.load(sys.stdin)))
