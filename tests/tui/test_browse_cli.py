"""`ssetap browse`: bad input is one line and exit 2, before any screen is drawn."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from recorder.cli import main
from recorder.store import StoreError
from tui.app import check_capture, run_browser


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    foreign = tmp_path / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    return {
        "missing": (tmp_path / "missing.db", "no such file"),
        "directory": (tmp_path, "is a directory"),
        "empty": (empty, "empty file, not an ssetap capture"),
        "corrupt": (corrupt, "not a readable SQLite capture"),
        "foreign": (foreign, "not an ssetap capture"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "corrupt", "foreign"])
def test_bad_capture_is_one_line_and_exit_2(kind: str, bad_files: dict[str, tuple[Path, str]],
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected = bad_files[kind]
    monkeypatch.setattr("textual.app.App.run", _no_app)
    assert main(["browse", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ssetap: error: ") and expected in err
    with pytest.raises(StoreError, match=expected):
        run_browser(path)  # the entry point `ssetap demo` uses checks the same way


def _no_app(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the app must not start on bad input")


def test_unknown_session_is_exit_2(story: tuple[Path, dict[str, Any]],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["browse", str(story[0]), "99"]) == 2
    assert "no session '99'" in capsys.readouterr().err
    with pytest.raises(StoreError, match="no session 99"):
        check_capture(story[0], 99)


def test_browse_needs_a_terminal(story: tuple[Path, dict[str, Any]],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["browse", str(story[0])]) == 2  # pytest's stdin is not a terminal
    assert "needs a terminal" in capsys.readouterr().err


def test_browse_hands_the_session_to_the_app(story: tuple[Path, dict[str, Any]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("tui.app.run_browser",
                        lambda db, session, gap_threshold: started.append(
                            (db, session, gap_threshold)) or 0)
    assert main(["browse", str(story[0]), "2", "--gap", "5"]) == 0
    assert started == [(str(story[0]), 2, 5.0)]
