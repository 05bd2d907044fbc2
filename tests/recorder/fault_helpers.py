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
from mcp import ClientSession, McpError

from recorder.cli import main as ssetap
from recorder.demo_client import _open_transport

Scenario = Callable[[ClientSession], Awaitable[Any]]


def run_client(url: str, transport: str, scenario: Scenario, *, timeout: float = 10.0) -> Any:
    """Initialize an official-SDK client session and run `scenario` in it; its result back."""

    async def main() -> Any:
        async with (
            _open_transport(url, transport) as (read, write),  # type: ignore[arg-type]
            ClientSession(read, write, read_timeout_seconds=timedelta(seconds=timeout)) as session,
        ):
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
