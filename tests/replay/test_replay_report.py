"""Golden-file checks of the replay report in its three forms (text, JSON, JUnit XML).

Regenerate after an intended change with `SSETAP_UPDATE_GOLDEN=1 pytest tests/replay`, and
review the diff of the golden files like any other code change.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from replay.diff import MISSING, Difference
from replay.report import render_failures, render_json, render_junit, render_text
from replay.results import CallResult, ReplayResult, SessionResult

GOLDEN = Path(__file__).parent / "golden"


def sample_result() -> ReplayResult:
    calls = (
        CallResult(1, "initialize", None, "match", 12.04, 22.07),
        CallResult(2, "tools/list", None, "differs", 3.5, 11.72, (
            Difference("$.result.tools[name=add]",
                       {"name": "add", "description": "Add two integers."}, MISSING),
        )),
        CallResult(3, "tools/call", "echo", "differs", 10.0, 10.58, (
            Difference("$.result.content[0].text", "hello", "HELLO"),
            Difference("$.result.structuredContent.result", "hello", "HELLO"),
        )),
        CallResult(4, "tools/call", "add", "error", 4.2, 9.09,
                   detail="tool error: Unknown tool: add"),
        CallResult(5, "tools/call", "slow", "slow", 1203.4, 504.15,
                   detail="slower than recorded by more than 2x and +250 ms", slow=True),
        CallResult(6, "resources/read", "demo://readme", "missing", None, 9.67,
                   detail="no response within 30 s"),
        CallResult(7, "tools/call", "hang", "match", None, None,
                   detail="recorded without a response (cancelled); not compared"),
    )
    # Recorded ids as `ssetap show` prints them (the SDK counts from 0).
    calls = tuple(replace(c, recorded_id=str(c.ordinal - 1)) for c in calls)
    session = SessionResult(1, "legacy:7fb89628c5ceccccd6e3f7c99d0480bd", "sse",
                            "streamable-http", calls,
                            (("server requests answered from the recording "
                              "(sampling/createMessage): 1"),), None, 2)
    return ReplayResult("captures/demo.db", "http://127.0.0.1:9000/mcp", (session,), "fast")


@pytest.mark.parametrize(("name", "render"), [
    ("report.txt", render_text),
    ("report.json", render_json),
    ("report.junit.xml", render_junit),
    ("failures.txt", lambda r: render_failures(r) + "\n"),
])
def test_golden(name: str, render: object) -> None:
    text = render(sample_result())  # type: ignore[operator]
    path = GOLDEN / name
    if os.environ.get("SSETAP_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_passing_report_summary() -> None:
    calls = (CallResult(1, "initialize", None, "match", 1.0, 2.0),)
    result = ReplayResult("c.db", "http://t/mcp",
                          (SessionResult(1, "sid:x", "sse", "sse", calls),))
    assert result.ok and result.exit_code == 0
    assert render_text(result).endswith("PASSED: 1 calls: 1 match\n")
