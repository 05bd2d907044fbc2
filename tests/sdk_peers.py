"""Which MCP SDK generations the tests can reach, in-process or from another interpreter.

The suite runs twice in CI: on Python 3.11 (mitmproxy 11, `mcp<2` in-process, mcp 2 from a side
virtualenv) and on the newest Python 3.12+ (mitmproxy 12.3 and `mcp>=2` in the same venv). Tests
that drive v1-only APIs in-process (FastMCP, ClientSession sampling callbacks) call
`require_v1()`; the mcp>=2 peer tests find their interpreter with `mcp2_python()`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from recorder import sdk

GENERATION = sdk.generation()
V1_ONLY = (f"drives the v1 SDK's API in-process; this venv has {sdk.describe()} "
           "(the Python 3.11 CI run covers it)")
_SIDE_VENV = Path.home() / ".cache" / "ssetap" / "mcp2-venv" / "bin" / "python"


def require_v1() -> None:
    """Skip the calling test module when the installed SDK is not v1."""
    if GENERATION >= 2:
        pytest.skip(V1_ONLY, allow_module_level=True)


def mcp2_python() -> str:
    """An interpreter with mcp>=2: this one when it has it, else $SSETAP_MCP2_PYTHON or the
    side venv `.ci/run` builds for the Python 3.11 run; "" when there is none."""
    if GENERATION >= 2:
        return sys.executable
    if os.environ.get("SSETAP_MCP2_PYTHON"):
        return os.environ["SSETAP_MCP2_PYTHON"]
    return str(_SIDE_VENV) if _SIDE_VENV.exists() else ""


# What the demo client negotiates with the demo server on this SDK, and its first request.
DEMO_PROTOCOL = "2026-07-28" if GENERATION >= 2 else "2025-11-25"
FIRST_METHOD = "server/discover" if GENERATION >= 2 else "initialize"
