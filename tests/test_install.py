"""Installing ssetap beside the SDK a project already runs never changes that SDK.

The CI's Python 3.12+ run installs mcp 2 first and ssetap second, the way a user adds ssetap to
a project on the current SDK. These tests check the result and ask pip (a dry run with a
report, no download of anything already installed) what installing the checkout again would
change: the answer must never include `mcp` or `mitmproxy`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from recorder.compat import smuggling_risk
from tests.sdk_peers import GENERATION

ROOT = Path(__file__).resolve().parent.parent


def _major_minor(name: str) -> tuple[int, int]:
    major, minor = version(name).split(".")[:2]
    return int(major), int(minor)


def test_mitmproxy_is_the_newest_line_the_interpreter_allows() -> None:
    if sys.version_info >= (3, 12):
        assert _major_minor("mitmproxy") >= (12, 3)
        assert smuggling_risk() is None, "3.12+ must run on h11 0.16+"
    else:
        assert version("mitmproxy") == "11.0.2"
        assert smuggling_risk() is not None  # h11 0.14: listeners stay loopback (compat.py)


@pytest.mark.skipif(GENERATION < 2, reason="mcp 2 shares a venv with ssetap only on Python 3.12+")
def test_reinstalling_ssetap_keeps_mcp_2(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-build-isolation",
         "--report", str(report), "-e", str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    planned = {item["metadata"]["name"].lower(): item["metadata"]["version"]
               for item in json.loads(report.read_text())["install"]}
    assert "mcp" not in planned, f"installing ssetap would move mcp to {planned.get('mcp')}"
    assert "mitmproxy" not in planned
    assert _major_minor("mcp") >= (2, 0)
