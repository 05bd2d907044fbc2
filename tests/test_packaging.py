"""The built wheel holds ssetap's three packages and nothing generic (no tests/, no bench/)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("ssetap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"recorder", "replay", "tui",
                                               wheel.name.split("-py3")[0] + ".dist-info"}
    assert "tui/app.tcss" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt")))
    assert b"ssetap = recorder.cli:main" in entry_points
    assert b"ssetap = replay.pytest_plugin" in entry_points
