"""The mock server running: a `MockApp` (replay.mock) behind its Host and Origin guard, and an
optional fault layer, served from a background thread.

`serve_capture` loads a capture and starts one (`ssetap serve`, the pytest plugin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from recorder.asgi_thread import AppServer, AppServerError
from replay.catalog import Catalog
from replay.host_guard import HostGuard, HostRules
from replay.mock import MockApp, MockError
from replay.plan import RECORDED, Timing

if TYPE_CHECKING:
    from recorder.faults import FaultConfig
    from replay.mock_faults import FaultMiddleware


class MockServer(AppServer):
    """A mock serving a catalog (see MockApp) from a background thread."""

    def __init__(self, catalog: Catalog, *, host: str = "127.0.0.1", port: int = 0,
                 timing: Timing = RECORDED, host_rules: HostRules | None = None,
                 log: Callable[[str], None] | None = None,
                 faults: FaultConfig | None = None) -> None:
        self.mock = MockApp(catalog, timing, log)
        app: Any = self.mock.app
        self.faults: FaultMiddleware | None = None
        if faults is not None and faults.specs:
            # `--fault`: the mock misbehaves on purpose (replay.mock_faults).
            from replay.mock_faults import FaultMiddleware

            app = self.faults = FaultMiddleware(app, faults)
        # Host and Origin checked before the mock (or a fault) sees a request (DNS rebinding).
        self.guard = HostGuard(app, host_rules or HostRules.for_listener(host))
        try:
            super().__init__(self.guard, host=host, port=port, name="ssetap-mock")
        except AppServerError as exc:
            raise MockError(str(exc)) from None

    def start(self, timeout: float = 10.0) -> Self:
        try:
            return super().start(timeout)
        except AppServerError as exc:
            raise MockError(str(exc)) from None

    @property
    def mcp_url(self) -> str:
        return self.url + self.mock.catalog.streamable_path

    @property
    def sse_url(self) -> str:
        return self.url + self.mock.catalog.sse_path

    @property
    def recorded_url(self) -> str:
        """The endpoint of the transport the capture was recorded on."""
        return self.sse_url if self.mock.catalog.recorded_transport == "sse" else self.mcp_url


def serve_capture(capture: str, *, session: str | None = None, host: str = "127.0.0.1",
                  port: int = 0, timing: Timing = RECORDED,
                  faults: FaultConfig | None = None) -> MockServer:
    """Load a capture and start a mock for it (in a background thread); call `.stop()`."""
    from replay.catalog import build_catalog
    from replay.recording import load_recordings

    catalog = build_catalog(load_recordings(capture, session, with_streams=True))
    return MockServer(catalog, host=host, port=port, timing=timing, faults=faults).start()
