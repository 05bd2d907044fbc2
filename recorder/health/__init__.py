"""Stream-health, protocol and security checks: recorder events in, flags out.

Design notes: the rules this package keeps, and why.
- Sans-IO. Input is the recorder's typed events (recorder.events) in time order. They come
  live from recorder.ingest, or rebuilt from a stored capture by recorder.check. Output is
  `Flag`s. There are no timers: the clock is each event's `t`. `Tick` events move it
  forward, so a stream that goes quiet is flagged *while* it is quiet, not when it closes. Periodic checks (silent streams, overdue calls, recovery
  deadlines) run on ticks only. That way a live run (ticks every 0.2 s) and an offline run
  (ticks interpolated by the caller) reach the same verdicts.
- Kinds are data. `registry.KINDS` names every kind with its severity, summary, cause and the
  versions and transports it applies to; the README table and SARIF rules come from it.
- Detectors by concern: `streams`, `reconnects`, `calls`, `sessions`, `security` (each a
  `context.Detector` that declares the event types it reads, over one shared
  `context.Context` of sessions, exchanges, streams and calls) and `spec` (the protocol lint,
  its own pure core with a table of rules). `monitor.HealthMonitor` is the one facade: it
  updates the context, then dispatches each event by its type to the detectors that read it.
- Calls are recorder.correlate's: the detectors never pair requests and answers themselves,
  they read the call events (`CallOpened`, `CallAnswered`...) that follow each message.
- Once per subject. Each kind fires at most once for its subject: a stream, a call, a
  message, a session, a client's reconnect loop, or a server for the security findings.
  A sick stream gives one line, not one per tick.
- False positives are bugs. What the official SDKs do in a healthy session is normal by
  rule:
  - POST streams that close right after their response;
  - a client closing its own GET;
  - 405 on GET;
  - the failed POST before a legacy GET fallback (a 4xx: the call is rejected, not pending);
  - 202 answers;
  - a brand-new client that re-initializes after a 404;
  - a server ending the GET while the client DELETEs its session;
  - a server closing a stream after sending `retry:` (2025-11-25 polling);
  - a server ending a stream cleanly after its content, whatever its duration;
  - a client cancelling its own call before the deadline (information, not an error);
  - heartbeats that merely drift.
  A client closing its own stream at a round idle time counts as a timeout only if the
  client then reconnects; otherwise it was ending its session.
  Every flag needs evidence: a learned cadence, a response that never came, a deadline that
  recurs, or a burst after silence that no fresh request explains. Thresholds are generous
  and all live in `HealthConfig`.
- Memory follows what is open. Streams, pending calls and exchanges are dropped when they
  end. Per-session indexes of answered ids and event ids stay, because later checks
  (orphans, duplicates, resumption, cross-session delivery) need them: memory grows with a
  capture's calls and event ids, never with its bytes.
"""

from recorder.health.config import (
    KNOWN_TIMEOUTS,
    HealthConfig,
    HealthConfigError,
    config_from_mapping,
    parse_duration,
)
from recorder.health.monitor import HealthMonitor
from recorder.health.registry import BY_NAME, FLAG_KINDS, KINDS, FlagKind
from recorder.health.state import is_loopback_host

__all__ = [
    "BY_NAME", "FLAG_KINDS", "KINDS", "KNOWN_TIMEOUTS", "FlagKind", "HealthConfig",
    "HealthConfigError", "HealthMonitor", "config_from_mapping", "is_loopback_host",
    "parse_duration",
]
