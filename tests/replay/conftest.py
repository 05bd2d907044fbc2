"""Fixtures for replay tests: SDK servers with controlled changes, real recorded captures.

Captures are recorded once per test session through a real `ssetap record` subprocess in
front of a real FastMCP server, driven by the SDK's own client (see replay_helpers).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

# The helpers sit beside this file; tests import them by this unique name.
sys.path.insert(0, str(Path(__file__).parent))

from recording_helpers import record_capture

from tests.sdk_peers import GENERATION, V1_ONLY

if GENERATION < 2:
    from replay_helpers import (
        AUTH,
        TRANSPORTS,
        Capture,
        LiveServer,
        run_scenario,
        start_test_server,
    )
else:  # the fixtures below need v1's servers; pure replay tests still run
    TRANSPORTS = ("sse", "streamable-http")
    Capture = LiveServer = Any


@pytest.fixture
def server_factory() -> Iterator[Callable[..., LiveServer]]:
    """`server_factory(transport, variant="normal")` -> a running LiveServer, stopped after."""
    started: list[LiveServer] = []

    if GENERATION >= 2:
        pytest.skip(V1_ONLY)

    def factory(transport: str, variant: str = "normal", **kwargs: Any) -> LiveServer:
        server = start_test_server(transport, variant, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def _record(db: Path, transport: str) -> Capture:
    server = start_test_server(transport)
    summary: dict[str, Any] = {}
    path = "/sse" if transport == "sse" else "/mcp"
    try:
        record_capture(db, server.url, lambda proxy: summary.update(
            asyncio.run(run_scenario(proxy + path, transport, headers={"Authorization": AUTH}))))
    finally:
        server.stop()
    return Capture(transport, db, summary)


@pytest.fixture(scope="session")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Capture]:
    """One real capture per transport of the scenario against the normal server (recorded
    side by side: each has its own server, recorder process and client)."""
    if GENERATION >= 2:
        pytest.skip(V1_ONLY)
    folder = tmp_path_factory.mktemp("captures")
    with ThreadPoolExecutor(len(TRANSPORTS)) as pool:
        futures = {t: pool.submit(_record, folder / f"{t}.db", t) for t in TRANSPORTS}
        return {t: future.result() for t, future in futures.items()}
