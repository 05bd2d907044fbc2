"""What a capture says it holds (raw, redacted, mixed), and its side files never followed
through a symlink."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.cli import main
from tests.recorder.capture_query import q


def test_appending_redacted_to_raw_makes_a_mixed_capture_that_warns(record, tmp_path: Path,
                                                                   capsys) -> None:
    db = tmp_path / "mixed.db"
    record(None, "--mode", "regular", "--raw", db=db).stop()
    assert q(db, "SELECT value FROM meta WHERE key = 'redaction'") == [("off (raw capture)",)]
    record(None, "--mode", "regular", db=db).stop()
    assert q(db, "SELECT value FROM meta WHERE key = 'redaction'")[0][0].startswith("mixed")
    capsys.readouterr()
    assert main(["sessions", str(db)]) == 0
    assert "raw and redacted recordings" in capsys.readouterr().err
    assert main(["check", str(db), "--no-store"]) == 0
    assert "raw and redacted recordings" in capsys.readouterr().err


@pytest.mark.parametrize("planted", ["capture.db.lock", "capture.db.key"])
def test_lock_and_key_files_are_never_followed_through_a_symlink(tmp_path: Path,
                                                                 planted: str) -> None:
    from recorder.store import StoreError, StoreWriter
    from recorder.worker import load_key

    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 32)
    (tmp_path / planted).symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        if planted.endswith(".lock"):
            StoreWriter(tmp_path / "capture.db").close()
        else:
            load_key(tmp_path / "capture.db")
    assert victim.read_bytes() == b"x" * 32


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_redact_refuses_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    source = tmp_path / "in.db"
    assert main(["redact", str(source), str(tmp_path / "out.db")]) == 2
    assert "does not exist" in one_line_error(capsys)
    source.write_bytes(b"not a capture at all")
    assert main(["redact", str(source), str(tmp_path / "out.db")]) == 2
    assert "not a readable SQLite capture" in one_line_error(capsys)
    assert not (tmp_path / "out.db").exists() and not (tmp_path / "out.db.key").exists()
    assert main(["redact", str(source), str(source)]) == 2
    assert "new file" in one_line_error(capsys)


@pytest.mark.parametrize(("args", "message"), [
    (["--redact-path", "params.x"], "starting with '$'"),
    (["--redact-path", "tools/call:login"], "missing"),
    (["--raw", "--redact-path", "$.params.x"], "cannot be combined"),
    (["--redact-rules", "/nonexistent/rules"], "cannot read"),
])
def test_record_checks_redact_paths_before_it_starts(tmp_path: Path, capsys, args,
                                                     message: str) -> None:
    db = tmp_path / "c.db"
    assert main(["record", "--mode", "regular", "--listen", "127.0.0.1:0", "--db", str(db),
                 *args]) == 2
    assert message in one_line_error(capsys)
    assert not db.exists()
