"""`ssetap demo --no-browse` end to end, on whichever SDK generation this venv has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from recorder import sdk
from tests.sdk_peers import DEMO_PROTOCOL

ROOT = Path(__file__).resolve().parents[2]


def test_demo_records_both_transports_and_says_which_sdk(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "recorder.cli", "demo", "--no-browse",
                           "--db", str(db)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ssetap demo: using {sdk.describe()}" in proc.stderr
    listed = subprocess.run([sys.executable, "-m", "recorder.cli", "sessions", str(db), "--json"],
                            capture_output=True, text=True, env=env, timeout=60, check=True)
    sessions = orjson.loads(listed.stdout)
    assert [(s["transport"], s["protocol_version"]) for s in sessions] == [
        ("sse", DEMO_PROTOCOL), ("streamable-http", DEMO_PROTOCOL)]
    checked = subprocess.run([sys.executable, "-m", "recorder.cli", "check", str(db), "--json",
                              "--no-store"], capture_output=True, text=True, env=env,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout  # a clean SDK session: nothing at error
