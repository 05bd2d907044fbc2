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

import pytest

from recorder.cpu_policy import COMPETE, YIELD, CpuPolicy, set_cpu_mode
from tests.conftest import ROOT, start_recording, wait_for
from tests.recorder.pressure import SseProducer, StreamClient, wait_worker

linux_idle = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"),
                                reason="SCHED_IDLE is Linux's; elsewhere the worker stays at nice 10")


def test_it_yields_until_half_the_shedding_bound_then_competes_until_caught_up():
    policy = CpuPolicy.for_max_lag(2.0)
    assert (policy.mode, policy.catch_up_after) == (YIELD, 1.0)
    assert [policy.update(lag) for lag in (0.0, 0.3, 0.99)] == [None, None, None]
    assert policy.update(1.0) == COMPETE
    # Working off the backlog: still behind, even well under the threshold, it keeps going.
    assert [policy.update(lag) for lag in (1.5, 0.4, 0.06)] == [None, None, None]
    assert policy.update(0.01) == YIELD
    assert policy.update(0.0) is None
    assert (policy.mode, policy.switches) == (YIELD, 2)


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
        while len(switched) < 2 and time.time() < deadline:
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
    assert seen["start"] == [os.SCHED_IDLE]
    idle, other = os.SCHED_IDLE, os.SCHED_OTHER
    # Behind the wire: every thread competes; caught up: all yield again; stopping: compete.
    assert [(mode, ok, policies) for mode, ok, policies, _ in seen["switched"]] == [
        (COMPETE, True, [other]), (YIELD, True, [idle]), (COMPETE, True, [other])]
    assert all(threads >= 3 for *_, threads in seen["switched"][:2])  # main, writer, feeder


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
