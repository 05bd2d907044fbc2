"""A session's flags, looked up by the message, call, stream or exchange they name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from recorder.model import severity_rank


def _worst(current: str | None, severity: str) -> str:
    if current is None or severity_rank(severity) > severity_rank(current):
        return severity
    return current


@dataclass(slots=True)
class FlagIndex:
    """Flags of one session with the worst severity per row they name (for row markers)."""

    flags: list[dict[str, Any]] = field(default_factory=list)
    by_message: dict[int, str] = field(default_factory=dict)
    by_call: dict[int, str] = field(default_factory=dict)
    by_stream: dict[int, str] = field(default_factory=dict)
    by_exchange: dict[int, str] = field(default_factory=dict)

    @classmethod
    def build(cls, flags: Iterable[dict[str, Any]]) -> FlagIndex:
        """Each flag marks what it is most specifically about: its message and the rest of its
        call; else its stream; else its exchange. (A flag about a response also names the
        stream and exchange that carried it; marking those would flag a long GET stream for
        every error that travelled on it.)"""
        index = cls()
        for flag in flags:
            index.flags.append(flag)
            severity = flag["severity"]
            targets = [("message_id", index.by_message), ("call_id", index.by_call)]
            if flag.get("message_id") is None and flag.get("call_id") is None:
                targets = [("stream_id", index.by_stream)] if flag.get("stream_id") is not None \
                    else [("exchange_id", index.by_exchange)]
            for column, table in targets:
                row_id = flag.get(column)
                if row_id is not None:
                    table[row_id] = _worst(table.get(row_id), severity)
        return index

    def severity_of(self, *, message_id: int | None = None, call_id: int | None = None,
                    stream_id: int | None = None, exchange_id: int | None = None,
                    ) -> str | None:
        """The worst severity of the flags naming any of the given ids."""
        worst: str | None = None
        for row_id, table in ((message_id, self.by_message), (call_id, self.by_call),
                              (stream_id, self.by_stream), (exchange_id, self.by_exchange)):
            if row_id is not None and row_id in table:
                worst = _worst(worst, table[row_id])
        return worst

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for flag in self.flags:
            found[flag["severity"]] = found.get(flag["severity"], 0) + 1
        return found
