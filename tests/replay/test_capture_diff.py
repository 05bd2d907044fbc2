"""`ssetap diff` between real captures of two versions of a server, and its pure core."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from replay_helpers import open_client, record_capture, start_test_server

from recorder.cli import main
from replay.capture_diff import (
    BREAKING,
    CHANGE_KINDS,
    LEVELS,
    MINOR,
    RISKY,
    Surface,
    compare_surfaces,
    diff_captures,
)
from replay.recording import load_recordings

EXPECTED = [
    (BREAKING, "tool-removed", "tool add"),
    (RISKY, "tool-description-changed", "tool echo"),
    (RISKY, "result-changed", "prompts/get greet"),
    (MINOR, "parameter-added-optional", "tool slow parameter label"),
]


async def _session(url: str, *, with_add: bool) -> None:
    async with open_client(url, "streamable-http") as session:
        await session.list_tools()
        await session.call_tool("echo", {"text": "hello"})
        if with_add:
            await session.call_tool("add", {"a": 2, "b": 40})
        await session.call_tool("slow", {"seconds": 0.05})
        await session.list_prompts()
        await session.get_prompt("greet", {"name": "Ada"})
        await session.list_resources()


def _capture(db: Path, variant: str) -> Path:
    server = start_test_server("streamable-http", variant)
    try:
        record_capture(db, server.url, lambda proxy: asyncio.run(
            _session(proxy + "/mcp", with_add=variant == "normal")))
    finally:
        server.stop()
    return db


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("versions")
    return _capture(folder / "v1.db", "normal"), _capture(folder / "v2.db", "v2")


def test_diff_of_two_server_versions_reports_exactly_the_changes(
    versions: tuple[Path, Path],
) -> None:
    v1, v2 = versions
    result = diff_captures(load_recordings(v1), load_recordings(v2))
    assert [(c.level, c.kind, c.subject) for c in result.changes] == EXPECTED
    description = result.changes[1]
    assert description.before == "Return the text unchanged."
    assert "read the user's files" in description.after
    (difference,) = result.changes[2].differences
    assert difference.path == "$.result.messages[0].content.text"
    assert (difference.expected, difference.actual) == ("Please greet Ada warmly.",
                                                        "Good day, Ada.")
    assert result.changes[3].after["type"] == "string"
    assert result.unmatched_before == 1 and result.unmatched_after == 0  # the add call
    methods = {f.method: f for f in result.latency}
    slow = methods["tools/call slow"]
    assert slow.before_count == 1 and slow.after_count == 1
    assert methods["tools/call add"].after_count == 0
    assert slow.before_p50 is not None and slow.after_p95 is not None


def test_same_server_twice_is_no_change(versions: tuple[Path, Path]) -> None:
    v1, _ = versions
    result = diff_captures(load_recordings(v1), load_recordings(v1))
    assert result.changes == () and result.exit_code() == 0


def test_cli_formats_and_exit_codes(versions: tuple[Path, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    v1, v2 = map(str, versions)
    junit = tmp_path / "diff.xml"
    assert main(["diff", v1, v2, "--junit", str(junit)]) == 1
    text = capsys.readouterr().out
    assert "BREAKING  tool-removed" in text and "4 changes: 1 breaking, 2 risky, 1 minor" in text
    assert "before: Return the text unchanged." in text
    assert "latency (before | after):" in text
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("4", "1")

    assert main(["diff", v1, v2, "--json", "--fail-on", "none"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"] == {"breaking": 1, "risky": 2, "minor": 1, "info": 0}
    assert [(c["level"], c["kind"], c["subject"]) for c in report["changes"]] == EXPECTED

    assert main(["diff", v1, v2, "--markdown", "--fail-on", "risky"]) == 1
    markdown = capsys.readouterr().out
    assert markdown.startswith("### ❌ ssetap diff: 4 changes")
    assert "| `tool-description-changed` | tool echo |" in markdown
    # Reversed, the removal is an addition: minor; the new parameter's removal breaks.
    assert main(["diff", v2, v1, "--json"]) == 1
    kinds = {c["kind"] for c in json.loads(capsys.readouterr().out)["changes"]}
    assert {"tool-added", "parameter-removed"} <= kinds
    assert main(["diff", v1, v1]) == 0
    assert "no changes" in capsys.readouterr().out
    assert main(["diff", v1, str(tmp_path / "missing.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssetap: error:")


def _tool(name: str, description: str, properties: dict[str, object],
          required: list[str]) -> dict[str, object]:
    return {"name": name, "description": description,
            "inputSchema": {"type": "object", "properties": properties, "required": required}}


def test_schema_changes_are_classified() -> None:
    before = Surface(tools={"t": _tool("t", "d", {"a": {"type": "integer"},
                                                  "b": {"type": "string"}}, ["a"])},
                     capabilities={"tools": {}, "logging": {}}, protocol_version="2025-06-18",
                     listed=frozenset({"tools"}))
    after = Surface(tools={"t": _tool("t", "d", {"a": {"type": "string"},
                                                 "b": {"type": "string", "enum": ["x"]},
                                                 "c": {"type": "number"}}, ["a", "b", "c"])},
                    capabilities={"tools": {}, "prompts": {}}, protocol_version="2025-11-25",
                    listed=frozenset({"tools"}))
    found = [(c.kind, c.subject) for c in compare_surfaces(before, after)]
    assert found == [
        ("protocol-version-changed", "server"),
        ("capability-removed", "capability logging"),
        ("capability-added", "capability prompts"),
        ("parameter-added-required", "tool t parameter c"),
        ("parameter-type-changed", "tool t parameter a"),
        ("parameter-schema-changed", "tool t parameter b"),
        ("parameter-now-required", "tool t parameter b"),
    ]
    # A kind of listing one capture never asked for is unknown, not removed.
    assert compare_surfaces(before, Surface(tools={}, listed=frozenset())) == []


def test_every_change_kind_has_a_level_and_a_readme_row() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for kind in CHANGE_KINDS.values():
        assert kind.level in LEVELS and kind.summary
        assert f"`{kind.name}`" in readme, kind.name
