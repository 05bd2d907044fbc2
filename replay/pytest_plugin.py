"""pytest plugin (entry point `ssetap`): captures as regression tests and as mock servers.

Fixtures:
- `ssetap_replay(db_path, target=url, **options)` replays a capture against a live server and
  fails the test with a readable diff when anything differs; returns the ReplayResult.
- `ssetap_mock(db_path, **options)` starts a mock MCP server from a capture and returns its
  URL; the mock stops at teardown.

Both work from sync and async tests: the replay runs on its own event loop in a worker
thread, the mock in its own server thread. Imports are lazy, so the plugin costs nothing in
test runs that do not use it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from replay.mock_server import MockServer
    from replay.results import ReplayResult


def _replay_options(*, timing: str = "fast", ignore: Sequence[str | os.PathLike[str]] = (),
                    ignore_rules: str = "", default_ignores: bool = True,
                    latency_threshold: str | None = None, fail_on_slow: bool = False,
                    latency_samples: int = 3, headers: dict[str, str] | None = None,
                    timeout: float = 30.0, transport: str = "auto", only: Sequence[str] = (),
                    skip: Sequence[str] = ()) -> Any:
    from pathlib import Path

    from replay.diff import DEFAULT_RULES, DiffOptions, parse_rules
    from replay.engine import ReplayOptions
    from replay.plan import parse_timing
    from replay.verdict import parse_latency_limit

    rules = list(DEFAULT_RULES if default_ignores else ())
    for path in ignore:
        rules.extend(parse_rules(Path(path).read_text(encoding="utf-8"), source=str(path)))
    if ignore_rules:
        rules.extend(parse_rules(ignore_rules, source="ignore_rules"))
    return ReplayOptions(
        timing=parse_timing(timing),
        diff=DiffOptions(tuple(rules), volatile_values=default_ignores),
        latency=parse_latency_limit(latency_threshold or "2x+250ms"),
        headers=tuple((headers or {}).items()),
        timeout=timeout, transport=transport, only=tuple(only), skip=tuple(skip),
        # As on the command line: a threshold given opts in to failing on latency.
        fail_on_slow=fail_on_slow or latency_threshold not in (None, "off"),
        latency_samples=latency_samples,
    )


def run_replay(db_path: str | os.PathLike[str], target: str, *, session: str | None = None,
               **options: Any) -> ReplayResult:
    """Replay on a private event loop in a worker thread (safe inside async tests)."""
    from replay.engine import replay_async

    replay_options = _replay_options(**options)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ssetap-replay") as pool:
        future = pool.submit(asyncio.run, replay_async(db_path, target, session=session,
                                                       options=replay_options))
        return future.result()


@pytest.fixture
def ssetap_replay() -> Callable[..., ReplayResult]:
    """`ssetap_replay(db_path, target=url, **options)`: replay, fail the test on any difference.

    Options: session, timing ("fast", "recorded", "xN"), ignore (rules files),
    ignore_rules (rules text), default_ignores, latency_threshold (fails on slow calls),
    fail_on_slow, latency_samples, headers (dict),
    timeout, transport, only, skip, and check=False to get the result without failing.
    """

    def replay(db_path: str | os.PathLike[str], target: str, *, check: bool = True,
               **options: Any) -> ReplayResult:
        from replay.report import render_failures

        result = run_replay(db_path, target, **options)
        if check and not result.ok:
            pytest.fail(render_failures(result), pytrace=False)
        return result

    return replay


@pytest.fixture
def ssetap_mock() -> Iterator[Callable[..., str]]:
    """`ssetap_mock(db_path, session=None, timing="recorded", transport="auto")` -> URL.

    The URL is the recorded transport's endpoint (`transport="sse"` or `"streamable-http"`
    picks one); every mock started by the test stops at teardown. `faults=[...]` (specs as
    for `--fault`, with `fault_after`, `fault_every`, `fault_sessions`) makes it misbehave.
    """
    servers: list[MockServer] = []

    def start(db_path: str | os.PathLike[str], *, session: str | None = None,
              timing: str = "recorded", transport: str = "auto", faults: Sequence[str] = (),
              fault_after: str | float | None = None, fault_every: str | float | None = None,
              fault_sessions: int | None = None) -> str:
        from recorder.faults import fault_config
        from replay.mock_server import serve_capture
        from replay.plan import parse_timing

        config = fault_config(faults, after=fault_after, every=fault_every,
                              sessions=fault_sessions) if faults else None
        server = serve_capture(str(db_path), session=session, timing=parse_timing(timing),
                               faults=config)
        servers.append(server)
        if transport == "auto":
            return server.recorded_url
        return server.sse_url if transport == "sse" else server.mcp_url

    yield start
    for server in servers:
        server.stop()
