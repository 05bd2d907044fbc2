"""The worker yields the CPU to the traffic and competes for it only when behind
(recorder.cpu_policy): the decision as a pure core, and the real scheduler calls in real
processes (Linux: SCHED_IDLE)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from recorder.cpu_policy import (
    COMPETE,
    FALLING_READS,
    OUTRUN_DEMAND,
    YIELD,
    CpuPolicy,
    Switch,
    demand,
    set_cpu_mode,
)
from tests.conftest import ROOT, start_recording, wait_for
from tests.recorder.pressure import SseProducer, StreamClient, wait_worker

linux_idle = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"),
                                reason="SCHED_IDLE is Linux's; elsewhere the worker stays at nice 10")


def test_it_yields_until_half_the_shedding_bound_then_competes_until_caught_up():
    policy = CpuPolicy.for_max_lag(2.0)
    assert (policy.mode, policy.catch_up_after) == (YIELD, 1.0)
    # (A lag between idle reads: starved for a moment, not outrun; see the next test.)
    assert [policy.update(lag) for lag in (0.0, 0.3, 0.0, 0.99)] == [None] * 4
    assert policy.update(1.0) == Switch(COMPETE, 0.0)
    # Working off the backlog: still behind, even well under the threshold, it keeps going.
    assert [policy.update(lag) for lag in (1.5, 0.4, 0.06)] == [None, None, None]
    assert policy.update(0.01) == Switch(YIELD)
    assert policy.update(0.0) is None
    assert (policy.mode, policy.switches, policy.deferrals) == (YIELD, 2, 0)


def test_outrun_by_the_traffic_it_leaves_the_burst_alone_until_the_catch_up_point():
    # Reads in a row, each further behind than the last: the traffic outruns the worker, and
    # anything it did now, even on idle CPU, would slow the traffic (measured: the module's
    # docstring). It leaves the input unread until it is 1.5 s behind, then competes.
    policy = CpuPolicy.for_max_lag(2.0)
    assert (policy.catch_up_after, policy.defer_until) == (1.0, 1.5)
    assert [policy.update(lag) for lag in (0.02, 0.12)] == [None, None]
    switch = policy.update(0.2)
    assert switch is not None and switch.mode == COMPETE
    assert switch.after == pytest.approx(1.3)
    assert (policy.mode, policy.deferrals) == (COMPETE, 1)
    assert policy.update(0.7) is None  # catching up, competing
    assert policy.update(0.01) == Switch(YIELD)
    # As measured in a burst: two reads in a row may find the same lag.
    assert [policy.update(lag) for lag in (0.003, 0.176)] == [None, None]
    assert policy.update(0.194) == Switch(COMPETE, pytest.approx(1.306))


def test_a_read_that_needed_a_core_for_its_wire_time_defers_at_once():
    # 200 events that arrived within 6 ms took the main thread 5 ms: with the writer's share
    # the worker needs well over a core for this traffic, lagging or not yet.
    assert demand(0.005, 200, 10.000, 10.006) == pytest.approx(5 / 6)
    policy = CpuPolicy.for_max_lag(2.0)
    switch = policy.update(0.01, demand(0.005, 200, 10.000, 10.006))
    assert switch == Switch(COMPETE, pytest.approx(1.49))
    assert policy.deferrals == 1


@pytest.mark.parametrize(("cpu", "facts", "first", "last"), [
    (0.005, 200, 10.0, 10.2),  # a light stream read after a stall: 2.5 % of a core
    (0.005, 20, 10.0, 10.0001),  # too few facts to say anything about a rate
    (0.005, 500, 10.0, 10.0),  # no span (one timestamp): no rate either
])
def test_reads_that_do_not_show_an_outrunning_rate_do_not_defer(cpu, facts, first, last):
    policy = CpuPolicy.for_max_lag(2.0)
    assert demand(cpu, facts, first, last) < OUTRUN_DEMAND
    assert policy.update(0.01, demand(cpu, facts, first, last)) is None


@pytest.mark.parametrize("lags", [
    (0.3, 0.25, 0.2, 0.15, 0.12),  # starved for a moment, then less behind: catching up
    (0.2, 0.2, 0.2, 0.2),  # behind, but keeping pace
    (0.01, 0.015, 0.02, 0.03, 0.045),  # rising, but within what a keeping-up worker reads at
    (0.2, 0.0, 0.3, 0.0, 0.2),  # caught up in between (an idle read)
    (0.01, 0.02, 0.05, 0.5),  # one long stall after a few keeping-up reads
])
def test_a_worker_that_is_not_outrun_never_defers(lags):
    policy = CpuPolicy.for_max_lag(2.0)
    assert [policy.update(lag) for lag in lags] == [None] * len(lags)
    assert (policy.mode, policy.deferrals) == (YIELD, 0)


def test_no_deferral_when_already_at_the_catch_up_point():
    lags = [0.2 + 0.1 * i for i in range(FALLING_READS)]
    policy = CpuPolicy(catch_up_after=lags[-1] + 0.1)
    switches = [policy.update(lag) for lag in lags]
    assert switches == [None] * (FALLING_READS - 1) + [Switch(COMPETE, pytest.approx(0.1))]
    policy = CpuPolicy(catch_up_after=lags[-1])
    switches = [policy.update(lag) for lag in lags]
    assert switches == [None] * (FALLING_READS - 1) + [Switch(COMPETE)]


def test_a_tiny_max_lag_still_leaves_room_between_the_thresholds():
    policy = CpuPolicy.for_max_lag(0.05)
    assert policy.catch_up_after > policy.caught_up_below
    with pytest.raises(ValueError):
        CpuPolicy(0.05, 0.05)


@linux_idle
def test_another_process_is_switched_thread_by_thread():
    # The link does this to the worker when recording stops.
    child = subprocess.Popen([sys.executable, "-c", "import threading, time\n"
                              "threading.Thread(target=time.sleep, args=(30,)).start()\n"
                              "print(flush=True); time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # both threads are running

        def policies() -> list[int]:
            tids = os.listdir(f"/proc/{child.pid}/task")
            assert len(tids) == 2
            return sorted({os.sched_getscheduler(int(tid)) for tid in tids})

        assert set_cpu_mode(YIELD, child.pid)
        assert policies() == [os.SCHED_IDLE]
        assert set_cpu_mode(COMPETE, child.pid)
        assert policies() == [os.SCHED_OTHER]
    finally:
        child.kill()
        child.wait()
    assert set_cpu_mode(COMPETE, child.pid)  # gone: nothing to switch, and no error


_LOOP = textwrap.dedent("""
    import json, os, sys, threading, time
    from pathlib import Path
    from recorder import wire, worker
    from recorder.cpu_policy import CpuPolicy

    def policies():
        return sorted({os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")})

    assert worker.cpu_policy(2.0) is not None, "cannot yield and compete again here"
    start = policies()
    switched = []
    real = worker.set_cpu_mode

    def set_cpu_mode(mode):
        # The real call; then what every thread of the process (the writer's too) runs at.
        done = real(mode)
        switched.append((mode, done, policies(), threading.active_count()))
        return done

    worker.set_cpu_mode = set_cpu_mode
    policy = CpuPolicy(catch_up_after=1.0)
    read_end, write_end = os.pipe()

    def feed():
        # Facts the proxy saw 3 s ago: the worker is that far behind when it reads them.
        old = time.time() - 3.0
        facts = [(wire.REQUEST, "f1", old, "GET", "http://127.0.0.1:1/sse", "HTTP/1.1",
                  [("accept", "text/event-stream")], None, "127.0.0.1:5", 0),
                 (wire.RESPONSE_HEADERS, "f1", old, 200, "OK",
                  [("content-type", "text/event-stream")], True)]
        facts += [(wire.CHUNK, "f1", old + i * 1e-4, b"data: {}\\n\\n") for i in range(200)]
        os.write(write_end, wire.encode_frame(facts))
        deadline = time.time() + 20
        while len(switched) < 3 and time.time() < deadline:
            time.sleep(0.01)  # nothing more to read: caught up, it yields again
        os.write(write_end, wire.encode_frame([(wire.END, "f1", time.time(), None)]))
        os.close(write_end)

    threading.Thread(target=feed).start()
    code = worker.run(Path(sys.argv[1]), raw=False, observers_factory=None, fd=read_end,
                      cpu=policy)
    print(json.dumps({"code": code, "start": start, "switched": switched}))
""")


@linux_idle
def test_the_worker_loop_switches_every_thread_and_competes_while_stopping(tmp_path: Path):
    done = subprocess.run([sys.executable, "-c", _LOOP, str(tmp_path / "cap.db")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0
    idle, other = os.SCHED_IDLE, os.SCHED_OTHER
    assert seen["start"] == [other]  # opening the capture does not wait for idle CPU
    # Capture open: every thread yields; behind the wire: competes; caught up: yields again;
    # stopping: competes.
    assert [(mode, ok, policies) for mode, ok, policies, _ in seen["switched"]] == [
        (YIELD, True, [idle]), (COMPETE, True, [other]), (YIELD, True, [idle]),
        (COMPETE, True, [other])]
    assert all(threads >= 3 for *_, threads in seen["switched"][:3])  # main, writer, feeder


_DEFER = textwrap.dedent("""
    import json, os, sys, threading, time
    from pathlib import Path
    from recorder import cpu_policy, wire, worker
    from recorder.cpu_policy import COMPETE, CpuPolicy

    assert worker.cpu_policy(2.0) is not None, "cannot yield and compete again here"
    catch_up_after, stop_it = float(sys.argv[2]), sys.argv[3] == "stop"
    policy = CpuPolicy(catch_up_after=catch_up_after)
    seen = {"updates": [], "switched": []}
    update, real = policy.update, worker.set_cpu_mode

    def recorded_update(behind, load=0.0):
        switch = update(behind, load)
        seen["updates"].append((time.monotonic(), behind, switch, load))
        return switch

    def recorded_set_cpu_mode(mode):
        seen["switched"].append((time.monotonic(), mode))
        return real(mode)

    policy.update, worker.set_cpu_mode = recorded_update, recorded_set_cpu_mode
    read_end, write_end = os.pipe()

    def send(facts):
        os.write(write_end, wire.encode_frame(facts))
        while worker.waiting(read_end):  # one read per frame: taken before the next one
            time.sleep(0.005)

    def feed():
        now = time.time()
        send([(wire.REQUEST, "f1", now, "GET", "http://127.0.0.1:1/sse", "HTTP/1.1",
               [("accept", "text/event-stream")], None, "127.0.0.1:5", 0),
              (wire.RESPONSE_HEADERS, "f1", now, 200, "OK",
               [("content-type", "text/event-stream")], True)])
        if sys.argv[3] == "rate":
            # A burst at full speed: frames of events that arrived within a millisecond,
            # written faster than the worker reads (the pipe stays full behind each read).
            while not policy.deferrals:
                t = time.time()
                os.write(write_end, wire.encode_frame(
                    [(wire.CHUNK, "f1", t + i * 1e-6, b"data: {}\\n\\n") for i in range(300)]))
        # A burst the worker falls behind: every frame carries chunks the proxy saw 0.15 s
        # before the first, so each read finds the worker further behind than the last.
        seen_at = time.time() - 0.15
        while not policy.deferrals:
            send([(wire.CHUNK, "f1", seen_at, b"data: {}\\n\\n")])
            time.sleep(0.02)
        seen["burst_done"] = time.monotonic()
        os.write(write_end, wire.encode_frame([(wire.CHUNK, "f1", time.time(), b"data: 1\\n\\n")]))
        if stop_it:
            time.sleep(0.2)
            seen["link_switched"] = time.monotonic()
            cpu_policy.set_cpu_mode(COMPETE, os.getpid())  # what the link does at close()
        while worker.waiting(read_end):
            time.sleep(0.005)
        os.write(write_end, wire.encode_frame([(wire.END, "f1", time.time(), None)]))
        os.close(write_end)

    threading.Thread(target=feed).start()
    code = worker.run(Path(sys.argv[1]), raw=False, observers_factory=None, fd=read_end,
                      cpu=policy)
    seen["returned"] = time.monotonic()
    print(json.dumps({"code": code, **seen}))
""")


def _deferring_worker(db: Path, catch_up_after: float, how: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _DEFER, str(db), str(catch_up_after), how],
                          cwd=ROOT, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0
    return seen


def _the_deferral(seen: dict[str, Any], until: float) -> tuple[float, float, float, float]:
    """The one deferral the worker made: when, how far behind, for how long, at what load;
    a switch to compete after as long as it takes to be `until` behind."""
    deferrals = [(at, behind, switch, load) for at, behind, switch, load in seen["updates"]
                 if switch and switch[1]]
    assert len(deferrals) == 1, seen["updates"]
    at, behind, (mode, after), load = deferrals[0]
    assert mode == COMPETE and after == pytest.approx(until - behind)
    return at, behind, after, load


@linux_idle
def test_an_outrun_worker_leaves_its_input_unread_then_competes(tmp_path: Path):
    seen = _deferring_worker(tmp_path / "defer.db", 3.0, "lag")
    deferred_at, behind, after, _ = _the_deferral(seen, 3.0)
    # Nothing read meanwhile: the next read comes only after the deferral, and competing.
    later = [at for at, *_ in seen["updates"] if at > deferred_at]
    competed_at = next(at for at, mode in seen["switched"] if mode == COMPETE)
    assert competed_at - deferred_at >= after - 0.01
    assert later and min(later) >= competed_at
    assert seen["returned"] - competed_at < 30


@linux_idle
def test_a_full_speed_burst_is_left_alone_before_the_worker_lags(tmp_path: Path):
    seen = _deferring_worker(tmp_path / "rate.db", 3.0, "rate")
    _, behind, _, load = _the_deferral(seen, 3.0)
    # Told by the rate, not by the lag: the worker was not yet 100 ms behind.
    assert load >= OUTRUN_DEMAND and behind < 0.1


@linux_idle
def test_a_deferral_ends_at_once_when_the_link_switches_the_worker_to_compete(tmp_path: Path):
    # Stopping is bounded in time: the link switches the worker to compete before it closes
    # the worker's input, and a worker deferring for a minute notices within a tick.
    seen = _deferring_worker(tmp_path / "stop.db", 60.0, "stop")
    assert seen["returned"] - seen["link_switched"] < 5
    assert seen["returned"] - seen["burst_done"] < 10


@linux_idle
def test_a_recording_worker_idles_at_the_lowest_priority_and_records_everything(tmp_path):
    producer = SseProducer()
    rec = start_recording(tmp_path / "idle.db", producer.url)
    try:
        worker = wait_worker(rec.proc.pid)
        client = StreamClient(rec.url, "n=500&rate=500").start()
        wait_for(lambda: client.done, timeout=60)
        tasks = Path(f"/proc/{worker}/task")
        policies = {os.sched_getscheduler(int(t.name)) for t in tasks.iterdir()}
        assert policies == {os.SCHED_IDLE}
        assert os.getpriority(os.PRIO_PROCESS, worker) == 10  # what it competes at
        code = rec.stop()
    finally:
        producer.stop()
    assert code == 0, rec.output
    assert client.events == 500
