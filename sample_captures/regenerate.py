"""Rebuild the sample captures: real SDK sessions recorded by the real recorder.

    python sample_captures/regenerate.py

Each capture is one scripted session of the bundled demo client against the demo server
(official Python SDK), recorded through `ssetap record`. The pseudonym key of each capture is
deleted afterwards, so the redacted session ids cannot be linked to anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from recorder.demo import record_demo

CAPTURES = {
    "legacy-sse.db": ("sse", {}),
    "streamable-sse.db": ("streamable-http", {}),
    "streamable-json.db": ("streamable-http", {"json_response": True}),
    "streamable-stateless.db": ("streamable-http", {"stateless": True}),
}


def main() -> int:
    for name, (transport, options) in CAPTURES.items():
        path = HERE / name
        for old in HERE.glob(name + "*"):
            old.unlink()
        print(f"recording {name} ...", file=sys.stderr, flush=True)
        record_demo(path, [transport], quiet=True, ping_interval=0.25, **options)
        Path(f"{path}.key").unlink(missing_ok=True)
    print("done: " + ", ".join(CAPTURES), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
