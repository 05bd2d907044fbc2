"""Scripted MCP client on the installed official SDK that exercises each message shape of the demo.

On SDK v1 it drives a `ClientSession` over `sse_client` / `streamable_http_client` and calls
`initialize`; on v2 it uses `mcp.Client`, which speaks the 2026-07-28 revision to a v2 server
(`server/discover`, no session) and falls back to `initialize` on an older one. The scenario is
the same: both clients share the method names it calls (`recorder.sdk` says which is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

from mcp import ClientSession, types
from mcp.client.sse import sse_client

from recorder import sdk

try:
    from mcp.client.streamable_http import streamable_http_client
except ImportError:  # mcp < 1.24 only has the (now deprecated) streamablehttp_client
    from mcp.client.streamable_http import (  # type: ignore[assignment,attr-defined,unused-ignore]
        streamablehttp_client as streamable_http_client,
    )

Transport = Literal["sse", "streamable-http"]

# Upper bound per request so a broken server or proxy fails the script instead of hanging it.
REQUEST_TIMEOUT = timedelta(seconds=15)

UNKNOWN_TOOL = "no_such_tool"
MISSING_RESOURCE = "demo://missing"


@contextlib.asynccontextmanager
async def _connect_v1(url: str, transport: Transport, on_log: Any) -> AsyncIterator[Any]:
    """A v1 `ClientSession`, initialized; yields (session, initialize result)."""
    if transport == "sse":
        opened: Any = sse_client(url)
    else:
        opened = streamable_http_client(url)
    async with opened as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT,
                                 logging_callback=on_log) as session:
            init = await session.initialize()
            yield session, init.serverInfo.name, str(init.protocolVersion)


@contextlib.asynccontextmanager
async def _connect_v2(url: str, transport: Transport, on_log: Any) -> AsyncIterator[Any]:
    """A v2 `mcp.Client` (2026-07-28 against a v2 server); yields (client, name, version)."""
    from mcp import Client  # type: ignore[attr-defined,unused-ignore]

    target: Any = sse_client(url) if transport == "sse" else url
    # log_level opts in to notifications/message on 2026-07-28 connections (SEP-2577).
    async with Client(target, read_timeout_seconds=REQUEST_TIMEOUT.total_seconds(),
                      logging_callback=on_log, log_level="info") as client:
        info = client.server_info
        yield client, info.name if info else "?", str(client.protocol_version)


def connect(url: str, transport: Transport, on_log: Any = None) -> Any:
    """An async context manager yielding (client, server name, protocol version) on the
    installed SDK: an initialized v1 `ClientSession`, or a v2 `mcp.Client`."""
    if transport not in ("sse", "streamable-http"):
        raise ValueError(f"unknown transport {transport!r}")
    return (_connect_v2 if sdk.generation() >= 2 else _connect_v1)(url, transport, on_log)


def _text(content: Sequence[types.ContentBlock]) -> str:
    return "".join(block.text for block in content if isinstance(block, types.TextContent))


async def run_script(
    url: str,
    transport: Transport,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo scenario against `url` and return a summary of what came back.

    Expected failures (the `fail` tool, the unknown tool, the JSON-RPC errors) are logged and
    recorded in the summary; anything unexpected in a step lands in summary["errors"] and the
    script carries on. Only failing to connect or initialize raises.
    """
    summary: dict[str, Any] = {"transport": transport, "url": url, "errors": []}
    progress_events: list[tuple[float, float | None, str | None]] = []
    logs: list[str] = []

    # Parameter names must match the SDK's ProgressFnT protocol.
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        progress_events.append((progress, total, message))
        log(f"  progress {progress}/{total} {message or ''}".rstrip())

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(str(params.data))
        log(f"  server log [{params.level}] {params.data}")

    rpc_error_type = sdk.error_class()
    # v1 types resource URIs as pydantic AnyUrl, v2 as plain strings.
    uri: Callable[[str], Any] = str
    if sdk.generation() < 2:
        from pydantic import AnyUrl

        uri = AnyUrl
    summary["sdk"] = sdk.describe()
    async with connect(url, transport, on_log) as (session, server_name, protocol_version):
        summary["server_name"] = server_name
        summary["protocol_version"] = protocol_version
        log(f"initialized {server_name} (protocol {protocol_version}) over {transport}")

        async def step(name: str, action: Callable[[], Any]) -> None:
            # One failing step must not stop the rest of the scenario.
            try:
                await action()
            except Exception as exc:
                summary["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
                log(f"unexpected error in {name}: {exc!r}")

        async def list_tools() -> None:
            tools = await session.list_tools()
            summary["tools"] = sorted(tool.name for tool in tools.tools)
            log(f"tools: {', '.join(summary['tools'])}")

        async def ping() -> None:
            if not sdk.has_ping(protocol_version):
                summary["ping"] = f"not in revision {protocol_version}"
                log(f"ping: skipped (removed in revision {protocol_version})")
                return
            await session.send_ping()
            summary["ping"] = True

        async def echo() -> None:
            result = await session.call_tool("echo", {"text": "hello ssetap"})
            summary["echo"] = _text(result.content)
            log(f"echo -> {summary['echo']!r}")

        async def add() -> None:
            result = await session.call_tool("add", {"a": 2, "b": 40})
            summary["add"] = int(_text(result.content))
            log(f"add -> {summary['add']}")

        async def countdown() -> None:
            # A progress_callback makes the SDK put a progressToken in params._meta.
            result = await session.call_tool(
                "countdown", {"n": 3, "delay": 0.05}, progress_callback=on_progress
            )
            summary["countdown"] = _text(result.content)
            count = len(progress_events)
            log(f"countdown -> {summary['countdown']!r} after {count} progress notifications")

        async def slow() -> None:
            result = await session.call_tool("slow", {"seconds": 0.5})
            summary["slow"] = _text(result.content)
            log(f"slow -> {summary['slow']!r}")

        async def fail() -> None:
            result = await session.call_tool("fail", {"message": "deliberate failure"})
            failed = sdk.is_error_result(result)
            summary["fail"] = {"is_error": failed, "text": _text(result.content)}
            log(f"fail -> isError={failed} {summary['fail']['text']!r} (expected)")

        def rpc_error(label: str, exc: Any) -> dict[str, Any]:
            log(f"{label} -> JSON-RPC error {exc.error.code} {exc.error.message!r} (expected)")
            return {"code": exc.error.code, "message": exc.error.message}

        async def unknown_tool() -> None:
            # SDK v1 answers an unknown tool with an isError result, not a JSON-RPC error.
            try:
                result = await session.call_tool(UNKNOWN_TOOL, {})
            except rpc_error_type as exc:
                summary["unknown_tool"] = {"jsonrpc_error": rpc_error(UNKNOWN_TOOL, exc)}
            else:
                text = _text(result.content)
                failed = sdk.is_error_result(result)
                summary["unknown_tool"] = {"is_error": failed, "text": text}
                log(f"{UNKNOWN_TOOL} -> isError={failed} {text!r} (expected)")

        async def missing_resource() -> None:
            try:
                await session.read_resource(uri(MISSING_RESOURCE))
            except rpc_error_type as exc:
                summary["missing_resource"] = rpc_error(f"read {MISSING_RESOURCE}", exc)
            else:
                summary["errors"].append(f"missing_resource: {MISSING_RESOURCE} was readable")

        async def method_not_found() -> None:
            # The demo server registers no completion handler, so this is a plain -32601.
            try:
                await session.complete(
                    types.PromptReference(type="ref/prompt", name="greet"),
                    {"name": "name", "value": "A"},
                )
            except rpc_error_type as exc:
                summary["method_not_found"] = rpc_error("completion/complete", exc)
            else:
                summary["errors"].append("method_not_found: completion/complete succeeded")

        async def read_resource() -> None:
            result = await session.read_resource(uri("demo://readme"))
            summary["resource"] = "".join(
                part.text
                for part in result.contents
                if isinstance(part, types.TextResourceContents)
            )
            log(f"demo://readme -> {summary['resource']!r}")

        async def get_prompt() -> None:
            result = await session.get_prompt("greet", {"name": "Ada"})
            texts = [
                m.content.text for m in result.messages if isinstance(m.content, types.TextContent)
            ]
            summary["prompt"] = "\n".join(texts)
            log(f"greet -> {summary['prompt']!r}")

        await step("list_tools", list_tools)
        await step("ping", ping)
        await step("echo", echo)
        await step("add", add)
        await step("countdown", countdown)
        await step("slow", slow)
        await step("fail", fail)
        await step("unknown_tool", unknown_tool)
        await step("missing_resource", missing_resource)
        await step("method_not_found", method_not_found)
        await step("read_resource", read_resource)
        await step("get_prompt", get_prompt)

    summary["progress"] = progress_events
    summary["logs"] = logs
    log("closed")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario from the command line and print the summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m recorder.demo_client", description=__doc__)
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/mcp or http://127.0.0.1:8000/sse")
    parser.add_argument(
        "--transport",
        choices=("sse", "streamable-http"),
        default=None,
        help="default: sse if the URL path ends in /sse, else streamable-http",
    )
    args = parser.parse_args(argv)
    transport: Transport = args.transport or (
        "sse" if args.url.rstrip("/").endswith("/sse") else "streamable-http"
    )
    summary = asyncio.run(
        run_script(args.url, transport, log=lambda line: print(line, file=sys.stderr))
    )
    print(json.dumps(summary, indent=2))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
