"""The mock's event store: every SSE answer's frames with their event ids, for resumption.

Design notes:
- A resumable server writes each SSE answer to a store as it goes, whether or not the client
  is still reading, and a client that reconnects with `Last-Event-ID` gets exactly the events
  after that one, on that answer's stream, then the rest as they come. So the mock plays a
  script into an `EventLog` (a producer task that outlives the HTTP response), and every
  reader, first or resumed, follows the log from a position.
- Event ids are the recorded ones while they are unique in the live session (a script played
  twice would repeat them), else generated; events the recorded server sent without an id get
  one too, so every answer is resumable. Comments (heartbeats) carry no id, as in SSE.
- Bounded: a session keeps its most recent `MAX_LOGS` answers; older ids are forgotten, and
  resuming from one is answered as from an unknown id.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

MAX_LOGS = 256


@dataclass(eq=False)
class EventLog:
    """One SSE answer as written: (event id or None, frame bytes), and whether it has ended."""

    frames: list[tuple[str | None, bytes]] = field(default_factory=list)
    done: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, event_id: str | None, frame: bytes) -> None:
        self.frames.append((event_id, frame))
        self._wake()

    def close(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        # Readers wait on the event they saw; a fresh one is armed for the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, start: int = 0) -> AsyncIterator[bytes]:
        """The frames from position `start` on, as they are written, until the log ends."""
        position = start
        while True:
            while position < len(self.frames):
                yield self.frames[position][1]
                position += 1
            if self.done:
                return
            await self._changed.wait()


@dataclass(eq=False)
class EventStore:
    """A live session's SSE answers, and where each event id sits in them."""

    logs: OrderedDict[int, EventLog] = field(default_factory=OrderedDict)
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    _next_log: int = 0
    _next_event: int = 0

    def open(self) -> tuple[int, EventLog]:
        number = self._next_log
        self._next_log += 1
        log = EventLog()
        self.logs[number] = log
        while len(self.logs) > MAX_LOGS:
            _, old = self.logs.popitem(last=False)
            for event_id, _frame in old.frames:
                if event_id is not None:
                    self.positions.pop(event_id, None)
        return number, log

    def event_id(self, recorded: str | None) -> str:
        """The recorded id while it is unused in this session, else a fresh one."""
        if recorded and recorded not in self.positions:
            return recorded
        while True:
            self._next_event += 1
            candidate = f"ssetap-{self._next_event}"
            if candidate not in self.positions:
                return candidate

    def add(self, number: int, event_id: str, frame: bytes) -> None:
        log = self.logs[number]
        log.append(event_id, frame)
        self.positions[event_id] = (number, len(log.frames))

    def after(self, event_id: str) -> tuple[EventLog, int] | None:
        """The log holding `event_id` and the position just after it; None if unknown."""
        found = self.positions.get(event_id)
        if found is None or found[0] not in self.logs:
            return None
        return self.logs[found[0]], found[1]
