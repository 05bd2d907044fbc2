"""Fixtures for the export/import tests: one real SDK session per transport, recorded once.

A real `ssetap record` in front of the demo FastMCP server, driven by the SDK's client; the
captures are shared by the module's tests (recording is the slow part) and never modified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recorder.demo_client import run_script
from recorder.demo_server import start_server
from tests.conftest import start_recording

# (transport of the demo server, its options, the client's path)
TRANSPORTS = {
    "legacy-sse": ("sse", {}, "/sse"),
    "streamable-sse": ("streamable-http", {}, "/mcp"),
    "streamable-json": ("streamable-http", {"json_response": True}, "/mcp"),
    "streamable-stateless": ("streamable-http", {"stateless": True}, "/mcp"),
}


def record_session(db: Path, name: str, *record_args: str) -> Path:
    """Record the demo client's scripted session over one transport into `db`."""
    return record_session_output(db, name, *record_args)[0]


def record_session_output(db: Path, name: str, *record_args: str) -> tuple[Path, str]:
    """`record_session`, also returning what `ssetap record` printed."""
    transport, options, path = TRANSPORTS[name]
    server = start_server(transport, ping_interval=0.2, **options)  # type: ignore[arg-type]
    try:
        rec = start_recording(db, server.url, *record_args)
        try:
            summary = asyncio.run(run_script(rec.url + path, transport,  # type: ignore[arg-type]
                                             log=lambda _: None))
            assert not summary["errors"], summary["errors"]
        finally:
            assert rec.stop() == 0, rec.output
    finally:
        server.stop()
    return db, rec.output


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """`recorded(transport_name)` -> a capture of one demo session (recorded on first use)."""
    cache: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("recorded")

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = record_session(base / f"{name}.db", name)
        return cache[name]

    yield get
