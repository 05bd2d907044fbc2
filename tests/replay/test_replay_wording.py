"""Small things users read: call numbering, the side-effect note's place, counts in words."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from replay_helpers import Capture, LiveServer

from recorder.cli import main
from recorder.commands.record import _summarise
from replay.catalog import build_catalog
from replay.recording import load_recordings


def test_unreachable_target_gets_its_error_before_any_note(
    captures: dict[str, Capture], capsys: pytest.CaptureFixture[str],
) -> None:
    # Not --quiet: the tool-call note would come first if it were printed before connecting.
    assert main(["replay", str(captures["sse"].db), "--target", "http://127.0.0.1:9/mcp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssetap: error: cannot reach"), err


def test_replay_numbers_calls_with_the_recorded_id_show_prints(
    captures: dict[str, Capture], server_factory: Callable[..., LiveServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(captures["streamable-http"].db)
    server = server_factory("streamable-http")
    assert main(["replay", db, "--target", server.mcp_url, "--only", "tools/list"]) == 0
    captured = capsys.readouterr()
    assert "  #1    id 0     initialize" in captured.out
    assert "  #2    id 1     tools/list" in captured.out
    assert main(["show", db, "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in shown["calls"] if c["method"] == "tools/list"] == ["1"]


def test_record_summary_counts_in_words(captures: dict[str, Capture],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _summarise(str(captures["sse"].db), started=0.0, code=0) == 0
    line = capsys.readouterr().err
    assert line.startswith("ssetap: recorded 1 session, ") and "1 sessions" not in line


def test_serve_counts_every_request_with_initialize(captures: dict[str, Capture]) -> None:
    catalog = build_catalog(load_recordings(captures["sse"].db, with_streams=True))
    # The scenario's 12 requests, initialize among them.
    assert catalog.requests == 12


def test_side_effect_note_follows_connection(
    captures: dict[str, Capture], server_factory: Callable[..., LiveServer],
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    server = server_factory("streamable-http")
    db = str(captures["streamable-http"].db)
    assert main(["replay", db, "--target", server.mcp_url, "--only", "tools/call:echo"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ssetap replay: note: replaying 1 tools/call request with")
    assert err[1].startswith("ssetap replay: session")
