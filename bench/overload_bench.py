"""Memory and accounting of `ssetap record` under a sustained full-speed overload.

Usage: `python bench/overload_bench.py [--seconds 60] [-- extra record options]`

One `bench/sse_server.py` stream at full speed through `ssetap record` (default limits unless
given) for `--seconds`, faster than the recording process keeps up with, so the recorder sheds.
Prints the proxy's and the worker's RSS every 10 s and their peaks, how long SIGTERM took, the
exit status, and recorded + shed against what the client received (events and bytes).
Loopback only, ephemeral ports.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_recording
from tests.recorder.pressure import (
    SseProducer,
    StreamClient,
    integrity,
    rss_mb,
    stream_accounts,
    wait_exit,
    wait_worker,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("record_args", nargs="*", help="extra `ssetap record` options")
    args = parser.parse_args()
    producer = SseProducer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "overload.db"
            rec = start_recording(db, producer.url, *args.record_args)
            worker = wait_worker(rec.proc.pid)
            client = StreamClient(rec.url, "n=1000000000").start()
            start = time.monotonic()
            samples = []
            while time.monotonic() - start < args.seconds:
                time.sleep(1)
                samples.append((time.monotonic() - start, rss_mb(rec.proc.pid), rss_mb(worker),
                                client.events))
            for t, proxy, work, events in samples[9::10]:
                print(f"t={t:4.0f} s  proxy {proxy:5.0f} MB  worker {work:5.0f} MB  "
                      f"events received {events:,}")
            print(f"peak RSS: proxy {max(s[1] for s in samples):.0f} MB, worker "
                  f"{max(s[2] for s in samples):.0f} MB")
            rec.proc.send_signal(signal.SIGTERM)
            code, took = wait_exit(rec.proc, 120)
            client.join(30)
            client.close()
            print(f"SIGTERM -> exit {code} in {took:.1f} s")
            for line in rec.lines:
                if "recording incomplete" in line:
                    print(line)
            for account in stream_accounts(db):
                print(f"stream {account.stream_id}: recorded {account.recorded_events:,} + shed "
                      f"{account.shed_events:,} = {account.recorded_events + account.shed_events:,}"
                      f" events (client got {client.events:,}); recorded "
                      f"{account.recorded_bytes:,} + shed {account.shed_bytes:,} = "
                      f"{account.recorded_bytes + account.shed_bytes:,} bytes (client got "
                      f"{client.body_bytes:,}); {account.gaps} gaps {sorted(account.reasons)}")
            print(f"integrity_check: {integrity(db)}")
    finally:
        producer.stop()


if __name__ == "__main__":
    main()
