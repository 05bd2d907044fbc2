"""The `ssetap` front door: exit codes and one-line errors for bad usage and bad input."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from recorder.cli import build_parser, main
from recorder.store import StoreWriter

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("ssetap: error: "), err
    return err


def test_missing_db(capsys, tmp_path):
    assert main(["sessions", str(tmp_path / "nope.db")]) == 2
    assert "no such file" in one_line_error(capsys)


def test_non_ssetap_sqlite_file(capsys, tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert main(["show", str(other), "1"]) == 2
    assert "not an ssetap capture" in one_line_error(capsys)


def test_garbage_file(capsys, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    assert main(["sessions", str(junk)]) == 2
    assert "not a readable SQLite capture" in one_line_error(capsys)


def test_empty_file(capsys, tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert main(["sessions", str(empty)]) == 2
    assert "empty file" in one_line_error(capsys)


def test_unknown_session(capsys, tmp_path):
    db = tmp_path / "c.db"
    StoreWriter(db).close()
    assert main(["show", str(db), "42"]) == 2
    assert "no session '42'" in one_line_error(capsys)


def test_empty_capture_lists_nothing(capsys, tmp_path):
    db = tmp_path / "c.db"
    StoreWriter(db).close()
    assert main(["sessions", str(db), "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


@pytest.mark.parametrize("url", ["ftp://x", "not a url", "http://127.0.0.1:8000/mcp",
                                 "http://127.0.0.1:99999"])
def test_bad_upstream_url(capsys, tmp_path, url):
    assert main(["record", "--upstream", url, "--db", str(tmp_path / "c.db")]) == 2
    assert "--upstream" in one_line_error(capsys)


def test_bad_listen(capsys, tmp_path):
    assert main(["record", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:http",
                 "--db", str(tmp_path / "c.db")]) == 2
    assert "--listen" in one_line_error(capsys)


def test_busy_port(capsys, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code = main(["record", "--upstream", "http://127.0.0.1:1", "--listen",
                     f"127.0.0.1:{port}", "--db", str(tmp_path / "c.db")])
    assert code == 2
    assert "busy" in one_line_error(capsys)


def test_record_refuses_a_foreign_database(capsys, tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert main(["record", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0",
                 "--db", str(other)]) == 2
    assert "not an ssetap capture" in one_line_error(capsys)


def test_usage_errors_are_one_line(capsys):
    assert main(["sessions"]) == 2
    one_line_error(capsys)
    assert main(["no-such-command"]) == 2
    one_line_error(capsys)


def test_every_subcommand_has_help_and_a_readme_mention():
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():  # type: ignore[union-attr]
        assert subparser.description, name
        assert f"ssetap {name}" in readme, f"README does not mention `ssetap {name}`"


def test_console_script_runs_without_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "recorder.cli", "sessions",
                          str(tmp_path / "missing.db")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_bad_check_options_fail_before_the_proxy_starts(capsys, tmp_path):
    assert main(["record", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0",
                 "--db", str(tmp_path / "c.db"), "--request-timeout", "soon"]) == 2
    assert "not a duration" in one_line_error(capsys)
    assert main(["record", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0",
                 "--db", str(tmp_path / "c.db"), "--check-config", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in one_line_error(capsys)
    assert not (tmp_path / "c.db").exists()


def test_version() -> None:
    from recorder.cli import package_version

    out = subprocess.run([sys.executable, "-m", "recorder.cli", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ssetap {package_version()}"
    assert package_version()[0].isdigit()
