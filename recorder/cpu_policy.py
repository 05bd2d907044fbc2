"""When the recording process yields the CPU to the traffic, and when it competes for it.

Recording must never slow the traffic it records. On a machine with CPU to spare that costs
nothing; in a burst that saturates a small machine (two cores: client, server and proxy
already take most of them) every cycle the worker takes is one the proxy's event loop waits
for. A nice value does not prevent it: measured with bench/stream_bench.py at nice 10, the
worker still took 0.3 to 0.6 cores during a burst while the proxy was ready to run and
waited for a CPU 20 to 32 % of it, and throughput through `ssetap record` fell to 0.73 of
bare mitmdump's in one round of three.

So the worker runs at the lowest priority the OS has (Linux `SCHED_IDLE`: it gets a CPU that
nothing else wants, and a woken proxy or client takes that CPU at once), and catches up
afterwards from the backlog the proxy holds for it. Yielding is bounded by the recorder's own
promise: the proxy sheds past `--max-lag` of unrecorded data, so once the worker is
`catch_up_after` behind the wire (half of `--max-lag` by default) it competes like any
process at its nice value until it has caught up (`caught_up_below`), and only then yields
again. A sustained overload is therefore recorded as well as before; a burst no longer costs
the traffic the worker's share.

Idle CPU is not free, though. On the two-core machine the benchmarks run on, a `SCHED_IDLE`
process doing nothing but spinning raised bare mitmdump's CPU per event from 23-25 to 33 us
and its client's from 12-13 to 25 us (bench/stream_bench.py, the same minutes): work done in
the gaps the traffic leaves still slows the traffic. So a worker that the traffic outruns
while it yields does not nibble at the burst: it leaves its input unread until it is
`defer_until` behind (three quarters of `--max-lag`), then competes to catch up. Outrun, at
once: one read's facts took the main thread `OUTRUN_DEMAND` of a core for the wire time
they span while more input waited; or, where rates say nothing, `FALLING_READS` reads in a
row each found it at least `defer_after` behind, the last further behind than the first.
Measured against yielding alone (bench/stream_bench.py, 16 rounds each, runs alternating):
the worker's share of a burst 0.01-0.08 cores instead of 0.08-0.36, c/b 0.93 instead of
0.79 (median), the proxy's CPU per event 1.08x bare mitmdump's instead of 1.26x, the
client's 12-17 us instead of 18-20. A worker that was only starved for a moment on a light
stream reads a slow rate and finds itself less behind read after read as it catches up, so
it never defers and keeps the 200 ms crash bound; a deferral stays within `--max-lag`.

`CpuPolicy` is the decision (pure: lags and rates in, a mode change out); `set_cpu_mode` is
the one OS call that applies a mode to every thread of a process: recorder.worker to its
own, and the proxy's link to the worker's when recording stops (draining then is bounded in
time).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Final, Literal, NamedTuple

Mode = Literal["yield", "compete"]

YIELD: Final[Mode] = "yield"
COMPETE: Final[Mode] = "compete"

# Back to yielding only when nearly nothing is waiting: the hysteresis keeps a worker that is
# working off a backlog from flapping between the two modes on every read.
CAUGHT_UP_BELOW: Final = 0.05
# Falling behind: this many reads in a row, each at least DEFER_AFTER behind, the last further
# behind than the first. Two: at SCHED_IDLE in a burst a read comes only every 50-200 ms, and
# each one waited for is the traffic's CPU nibbled at. A worker that keeps up reads within
# ~10-20 ms of the wire (the proxy ships every 10 ms); one that was starved for a moment
# finds itself less behind read after read as it catches up. Only a worker the traffic
# outruns falls further behind. (Not "each further than the one before": in a burst two
# reads in a row can find the same lag.)
FALLING_READS: Final = 2
DEFER_AFTER: Final = 0.1


# Outrun at once: the facts of one read took the main thread at least this share of a core
# for the wire time they span, and more input was waiting after them. The writer thread needs
# about as much again, so the worker needs a core or more for this traffic: it cannot keep up
# on idle CPU, and waiting for the lag to show it costs the burst 50-200 ms of nibbling.
OUTRUN_DEMAND: Final = 0.5
# Fewer facts than this in a read, or a shorter span, say nothing about the traffic's rate.
DEMAND_MIN_FACTS: Final = 100


def demand(cpu_seconds: float, facts: int, first_t: float, last_t: float) -> float:
    """The share of a core that processing `facts` took, over the wire time they span (0
    when a read is too small to say)."""
    span = last_t - first_t
    if facts < DEMAND_MIN_FACTS or span <= 0:
        return 0.0
    return cpu_seconds / span


class Switch(NamedTuple):
    """A mode change, made `after` seconds from now: the worker leaves its input unread
    meanwhile (a deferral). 0: at once."""

    mode: Mode
    after: float = 0.0


class CpuPolicy:
    """Feed it how far behind the wire the worker is after each read; it says when to switch."""

    def __init__(self, catch_up_after: float, caught_up_below: float = CAUGHT_UP_BELOW,
                 defer_after: float = DEFER_AFTER, defer_until: float | None = None) -> None:
        if not 0 <= caught_up_below < catch_up_after:
            raise ValueError("caught_up_below must be below catch_up_after")
        self.catch_up_after = catch_up_after
        self.caught_up_below = caught_up_below
        self.defer_after = defer_after
        # How far behind a deferral lets the worker fall before it competes (default: as far
        # as a starved worker may fall, catch_up_after).
        self.defer_until = max(catch_up_after, defer_until or 0.0)
        self.mode: Mode = YIELD
        self.switches = 0
        self.deferrals = 0
        # How far behind the last reads found it, while each was at least `defer_after`.
        self._recent: deque[float] = deque(maxlen=FALLING_READS)

    @classmethod
    def for_max_lag(cls, max_lag: float) -> CpuPolicy:
        """Half of the proxy's shedding bound: room for a starved worker to be scheduled
        (a SCHED_IDLE task still gets a slice now and then) and to catch up before the proxy
        sheds, while a burst of up to a second yields the CPU to the traffic. A deferral goes
        on to three quarters: a worker competing while the burst lasts cannot catch up anyway
        (it falls behind more slowly, taking the traffic's CPU), and a 1.5 s burst at the
        default `--max-lag` then runs without it; the last quarter is the margin for waking
        at SCHED_IDLE and switching before the proxy sheds."""
        catch_up_after = max(max_lag / 2, 2 * CAUGHT_UP_BELOW)
        return cls(catch_up_after, defer_until=max_lag * 0.75)

    def update(self, behind: float, demand: float = 0.0) -> Switch | None:
        """`behind`: seconds between the proxy seeing the newest fact just read and now (0
        when there was nothing to read); `demand`: what `demand()` said of this read while
        more input waited (0 otherwise). Returns the switch to make when the mode changes."""
        recent = self._recent
        if behind >= self.defer_after:
            recent.append(behind)
        else:
            recent.clear()
        if self.mode == YIELD and behind >= self.catch_up_after:
            switch = Switch(COMPETE)
        elif self.mode == YIELD and (demand >= OUTRUN_DEMAND or (
                len(recent) == FALLING_READS and behind > recent[0])):
            # Outrun by the traffic: leave the burst alone until the catch-up point.
            switch = Switch(COMPETE, self.defer_until - behind)
            self.deferrals += 1
        elif self.mode == COMPETE and behind < self.caught_up_below:
            switch = Switch(YIELD)
        else:
            return None
        self.mode = switch.mode
        recent.clear()
        self.switches += 1
        return switch


def set_cpu_mode(mode: Mode, pid: int | None = None) -> bool:
    """Every thread of process `pid` (default: this one) to SCHED_IDLE (yield) or back to
    the normal policy at its nice value (compete). False where the OS has no such policy (not
    Linux) or refuses the change."""
    if not hasattr(os, "SCHED_IDLE") or not hasattr(os, "sched_setscheduler"):
        return False
    policy = os.SCHED_IDLE if mode == YIELD else os.SCHED_OTHER
    try:
        # Per thread on Linux: the writer thread (and any other) must follow the main one.
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid or 'self'}/task")]
    except OSError:
        tids = [pid or 0]
    done = True
    for tid in tids:
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(0))
        except ProcessLookupError:
            pass  # a thread that has just ended
        except OSError:
            done = False
    return done
