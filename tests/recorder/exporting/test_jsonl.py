"""JSONL archives: export of a real recording, import back, the same capture for every reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from recorder.cli import main as ssetap
from recorder.store import Capture
from tests.recorder.exporting.conftest import TRANSPORTS


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    capsys.readouterr()
    code = ssetap(list(args))
    out = capsys.readouterr().out
    assert code in (0, 1), (args, code)
    return orjson.loads(out)


def readers(capsys: pytest.CaptureFixture[str], db: Path) -> dict[str, object]:
    """What `sessions --json`, `show --json` and `check --json` say about a capture."""
    sessions = cli_json(capsys, "sessions", str(db), "--json")
    assert isinstance(sessions, list) and sessions
    shown = [cli_json(capsys, "show", str(db), str(s["id"]), "--json") for s in sessions]
    check = cli_json(capsys, "check", str(db), "--json", "--no-store")
    assert isinstance(check, dict)
    assert check.pop("capture") == str(db)  # the one difference allowed: the file's name
    return {"sessions": sessions, "show": shown, "check": check}


@pytest.mark.parametrize("name", list(TRANSPORTS))
def test_jsonl_round_trips_exactly(recorded, name, tmp_path, capsys):
    db = recorded(name)
    archive = tmp_path / "capture.jsonl"
    assert ssetap(["export", str(db), "--format", "jsonl", "-o", str(archive)]) == 0
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    lines = [orjson.loads(line) for line in archive.read_bytes().splitlines()]
    assert lines[0]["type"] == "header" and lines[-1]["type"] == "end"
    with Capture(db) as capture:
        counts = capture.counts()
    rows: dict[str, int] = {}
    for line in lines:
        if line["type"] == "row":
            rows[line["table"]] = rows.get(line["table"], 0) + 1
    assert rows == {t: n for t, n in counts.items() if n} == \
        {t: n for t, n in lines[-1]["rows"].items() if n}
    assert {"sessions", "exchanges", "messages", "calls"} <= set(rows)
    if counts["chunks"]:  # raw chunks travel with their times and bytes
        chunk = next(line["row"] for line in lines if line.get("table") == "chunks")
        assert isinstance(chunk["t"], float) and "base64" in chunk["data"]

    restored = tmp_path / "restored.db"
    assert ssetap(["import", str(archive), "--db", str(restored)]) == 0
    assert readers(capsys, restored) == readers(capsys, db)
    # Row for row, the same capture (every table, every column, bytes and floats exact).
    again = tmp_path / "again.jsonl"
    assert ssetap(["export", str(restored), "--format", "jsonl", "-o", str(again)]) == 0
    strip = [line for line in archive.read_bytes().splitlines() if b'"imported_from"' not in line]
    assert [line for line in again.read_bytes().splitlines()
            if b'"imported_from"' not in line] == strip


def test_jsonl_to_stdout_and_one_session(recorded, tmp_path, capsysbinary):
    db = recorded("streamable-sse")
    assert ssetap(["export", str(db), "--format", "jsonl", "--session", "1"]) == 0
    lines = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert lines[0]["session"] == 1
    assert {line["row"]["session_id"] for line in lines
            if line.get("table") == "messages"} == {1}


def test_jsonl_import_refuses_cut_or_foreign_archives(recorded, tmp_path, capsys):
    db = recorded("streamable-json")
    archive = tmp_path / "a.jsonl"
    assert ssetap(["export", str(db), "--format", "jsonl", "-o", str(archive)]) == 0
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"\n".join(archive.read_bytes().splitlines()[:-3]) + b"\n")
    capsys.readouterr()
    assert ssetap(["import", str(cut), "--db", str(tmp_path / "cut.db")]) == 2
    err = capsys.readouterr().err
    assert "cut short" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cut.db").exists()  # nothing half-imported is left
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello\n")
    assert ssetap(["import", str(foreign)]) == 2
    assert "not a mitmproxy flow file, HAR or ssetap JSONL" in capsys.readouterr().err
    # Into a capture that already holds rows: refused (ids would collide).
    assert ssetap(["import", str(archive), "--db", str(db)]) == 2
    assert "already holds a capture" in capsys.readouterr().err
