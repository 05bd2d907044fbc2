"""The detector facade: recorder events in time order in, flags out (`HealthMonitor`).

For each event the monitor updates the shared context (context.Context.before), hands the
event to every detector that declared its type (in the order of `_detectors`, which is the
order their flags come out), lets the context forget what the event ended (Context.after),
and last hands it to the protocol lint. Ticks go to each detector's `tick`. One table per
event type, built once: dispatch is a dict lookup, never an isinstance chain.

Events no step reads (StreamCounters, SessionSeen, ChunkStored...) pass untouched, and do not
move the clock either: the periodic ones carry the recording process's time, not the
proxy's, and the live checks hold ticks back by their backlog (recorder.live); a counter
stamped "now" must not make a stream that is merely behind look silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from recorder.events import Event, Tick
from recorder.health.calls import CallChecks
from recorder.health.config import HealthConfig
from recorder.health.context import Context, Detector
from recorder.health.reconnects import ReconnectChecks
from recorder.health.registry import SPEC_VIOLATION
from recorder.health.security import SecurityChecks
from recorder.health.sessions import SessionChecks
from recorder.health.spec.lint import Finding, SpecLint, Validator
from recorder.health.streams import StreamChecks
from recorder.model import Flag


class HealthMonitor:
    """Feed it events in time order (with ticks); it returns the flags each one raised."""

    def __init__(self, config: HealthConfig | None = None, *,
                 validate: Validator | None = None) -> None:
        """`validate` checks params and results against the schema (the shells pass
        recorder.health.spec.schema.validate_message; without it the schema rule is off)."""
        self.ctx = Context(config)
        self.config = self.ctx.config
        sessions = SessionChecks(self.ctx)
        self._calls = CallChecks(self.ctx, sessions)
        streams = StreamChecks(self.ctx)
        # The order in which detectors see an event is the order of their flags for it.
        self._detectors: tuple[Detector, ...] = (
            self._calls, sessions, ReconnectChecks(self.ctx), SecurityChecks(self.ctx), streams)
        # On a tick, silences and cut streams first, then overdue calls, then lost sessions.
        self._tickers: tuple[Detector, ...] = (streams, self._calls, sessions)
        # The lint's handlers are steps of their own, reporting findings as they are made.
        self._lint = SpecLint(validate, report=self._spec_violation)
        lint_steps = self._lint.handlers
        self._table: dict[type, list[Callable[[Any], None]]] = {}
        for kind in {*self.ctx.before, *self.ctx.after, *self._lint.handles,
                     *(k for d in self._detectors for k in d.HANDLES)}:
            steps: list[Callable[[Any], None]] = []
            if kind in self.ctx.before:
                steps.append(self.ctx.before[kind])
            steps += [d.handlers()[kind] for d in self._detectors if kind in d.HANDLES]
            if kind in self.ctx.after:
                steps.append(self.ctx.after[kind])
            if kind in lint_steps:
                steps.append(lint_steps[kind])
            self._table[kind] = steps
        self._table.setdefault(Tick, []).insert(0, self._tick)

    @property
    def now(self) -> float:
        return self.ctx.now

    def observe(self, event: Event) -> list[Flag]:
        steps = self._table.get(type(event))
        if steps is None:
            return []
        ctx = self.ctx
        ctx.out = []
        t = event.t
        if t > ctx.now:  # max(ctx.now, t), without the call
            ctx.now = t
        for step in steps:
            step(event)
        return ctx.out

    def feed(self, events: Iterable[Event]) -> list[Flag]:
        """Every flag raised by a sequence of events (tests, offline checks)."""
        out: list[Flag] = []
        for event in events:
            out += self.observe(event)
        return out

    def finish(self, t: float) -> list[Flag]:
        """End of input: a last tick at `t`; what waited for more input is decided now."""
        flags = self.observe(Tick(t))
        self.ctx.out = []
        self._calls.finish(t)
        return flags + self.ctx.out

    def _tick(self, e: Tick) -> None:
        for detector in self._tickers:
            detector.tick(self.ctx.now)

    def _spec_violation(self, finding: Finding) -> None:
        rule = finding.rule
        self.ctx.flag(
            SPEC_VIOLATION, ("spec", rule.id, finding.scope), finding.t,
            f"[{rule.id}] {finding.text} (MCP specification, {rule.section}: {rule.summary}). "
            "Usual cause: an implementation that deviates from the specification",
            session_id=finding.session_id, exchange_id=finding.exchange_id,
            stream_id=finding.stream_id, message_id=finding.message_id, rule=rule.id,
            section=rule.section, versions=list(rule.versions),
        )
