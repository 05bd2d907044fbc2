"""What a replay found: one `CallResult` per replayed request, grouped by session."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

from replay.diff import Difference

MATCH: Final = "match"
DIFFERS: Final = "differs"
MISSING: Final = "missing"
ERROR: Final = "error"
SLOW: Final = "slow"

# Report order, worst first.
STATUSES: Final = (ERROR, MISSING, DIFFERS, SLOW, MATCH)


@dataclass(frozen=True, slots=True)
class CallResult:
    """The verdict on one request.

    `status`: match, differs (see `differences`), missing (no response), error (an
    unexpected JSON-RPC error, tool error or HTTP failure; see `detail`) or slow (a latency
    regression). `slow` is also set when a call that differs was slow as well.
    """

    ordinal: int
    method: str
    name: str | None
    status: str
    latency_ms: float | None = None
    recorded_latency_ms: float | None = None
    differences: tuple[Difference, ...] = ()
    detail: str | None = None
    slow: bool = False
    # The recorded JSON-RPC id as JSON text, as `ssetap show` prints it (None if synthetic).
    recorded_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == MATCH

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}" if self.name else self.method


@dataclass(frozen=True, slots=True)
class SessionResult:
    """One recorded session replayed against the target."""

    session_id: int
    session_key: str
    recorded_transport: str
    live_transport: str | None
    calls: tuple[CallResult, ...]
    notes: tuple[str, ...] = ()
    error: str | None = None
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.calls)

    def counts(self) -> Counter[str]:
        return Counter(c.status for c in self.calls)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A whole replay run."""

    capture: str
    target: str
    sessions: tuple[SessionResult, ...]
    timing: str = "fast"

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sessions)

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for session in self.sessions:
            total.update(session.counts())
        return total

    @property
    def exit_code(self) -> int:
        """0 when everything matched, 1 otherwise."""
        return 0 if self.ok else 1
