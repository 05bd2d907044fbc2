"""What the session timeline shows: a filter value and how it maps onto the store's sources."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from recorder.model import C2S, ERROR, INVALID, NOTIFICATION, REQUEST, RESULT, S2C

# Row kinds the timeline can show. The first five are JSON-RPC message kinds; the rest are
# the wire around them: HTTP exchanges, SSE stream opens and closes, heartbeat comments and
# SSE items that carry no message (endpoint events, control blocks, truncated bytes).
MESSAGE_KINDS: Final = (REQUEST, NOTIFICATION, RESULT, ERROR, INVALID)
HTTP: Final = "http"
STREAM: Final = "stream"
HEARTBEAT: Final = "heartbeat"
SSE_OTHER: Final = "sse"
ROW_KINDS: Final = (*MESSAGE_KINDS, HTTP, STREAM, HEARTBEAT, SSE_OTHER)
DIRECTIONS: Final = (C2S, S2C)


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    """A conjunction of conditions; an empty set means "any".

    Method and flagged-only conditions concern JSON-RPC messages (and, for flagged-only, the
    exchanges and streams a flag names), so rows of the surrounding wire drop out with them.
    """

    methods: frozenset[str] = field(default_factory=frozenset)
    directions: frozenset[str] = field(default_factory=frozenset)
    kinds: frozenset[str] = field(default_factory=frozenset)
    flagged_only: bool = False

    @property
    def active(self) -> bool:
        return bool(self.methods or self.directions or self.kinds or self.flagged_only)

    def describe(self) -> str:
        """A short human summary, empty when nothing is filtered."""
        parts = []
        if self.methods:
            parts.append("method " + ",".join(sorted(self.methods)))
        if self.directions:
            parts.append(" ".join(sorted(self.directions)))
        if self.kinds:
            parts.append("kind " + ",".join(k for k in ROW_KINDS if k in self.kinds))
        if self.flagged_only:
            parts.append("flagged")
        return " · ".join(parts)

    def with_direction_cycled(self) -> TimelineFilter:
        """any -> c2s -> s2c -> any: the quick direction toggle."""
        if not self.directions:
            return replace(self, directions=frozenset({C2S}))
        if self.directions == {C2S}:
            return replace(self, directions=frozenset({S2C}))
        return replace(self, directions=frozenset())

    # Which store sources answer this filter --------------------------------------------------

    def _allows(self, kind: str, direction: str) -> bool:
        return ((not self.kinds or kind in self.kinds)
                and (not self.directions or direction in self.directions))

    @property
    def message_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in MESSAGE_KINDS if k in self.kinds)

    @property
    def wants_messages(self) -> bool:
        return not self.kinds or bool(self.message_kinds)

    @property
    def wants_exchanges(self) -> bool:
        # Requests go client to server; an exchange row stands for its request.
        return not self.methods and self._allows(HTTP, C2S)

    @property
    def wants_streams(self) -> bool:
        return not self.methods and self._allows(STREAM, S2C)

    @property
    def wants_heartbeats(self) -> bool:
        return not self.methods and not self.flagged_only and self._allows(HEARTBEAT, S2C)

    @property
    def wants_other_sse(self) -> bool:
        return not self.methods and not self.flagged_only and self._allows(SSE_OTHER, S2C)
