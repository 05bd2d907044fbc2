"""Helpers for the fault-injection tests: an SDK client scenario and `ssetap check --json`."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from recorder import sdk
from recorder.cli import main as ssetap

McpError = sdk.error_class()

Scenario = Callable[[ClientSession], Awaitable[Any]]


def run_client(url: str, transport: str, scenario: Scenario, *, timeout: float = 10.0) -> Any:
    """Initialize an official-SDK client session and run `scenario` in it; its result back."""

    # The handshake-era ClientSession on either SDK generation (v2 types the timeout as float).
    read_timeout: Any = timeout if sdk.generation() >= 2 else timedelta(seconds=timeout)

    async def main() -> Any:
        opener: Any = sse_client(url) if transport == "sse" else streamable_http_client(url)
        async with opener as streams:
            async with ClientSession(streams[0], streams[1],
                                     read_timeout_seconds=read_timeout) as session:
                await session.initialize()
                return await scenario(session)

    return asyncio.run(asyncio.wait_for(main(), 60))


async def call(session: ClientSession, tool: str, arguments: dict[str, Any] | None = None,
               progress: list[float] | None = None) -> Any:
    """("result", text) or ("error", code) or ("timeout", None), as the client saw it."""

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        assert progress is not None
        progress.append(value)

    try:
        result = await session.call_tool(tool, arguments or {}, progress_callback=(
            on_progress if progress is not None else None))
    except McpError as exc:
        if "timed out" in str(exc.error.message).lower():
            return ("timeout", None)
        return ("error", exc.error.code)
    return ("result", "".join(getattr(b, "text", "") for b in result.content))


def check(db: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """`ssetap check DB --json ...`: exit code and the report."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ssetap(["check", str(db), "--json", "--no-store", *args])
    return code, orjson.loads(out.getvalue())


def flags(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for group in report["sessions"] for f in group["flags"]]


def serious(report: dict[str, Any]) -> list[tuple[str, bool]]:
    """(kind, injected) of every warning or error flag."""
    return sorted({(f["kind"], f["injected"]) for f in flags(report)
                   if f["severity"] in ("warning", "error")})


# How the SDK client reports a call whose response stream was cut and could not be resumed:
# SDK v1 waits for its read timeout; SDK v2 fails the call at once with "Connection closed".
LOST_CALL: tuple[str, Any] = ("timeout", None) if sdk.generation() < 2 else ("error", -32000)
