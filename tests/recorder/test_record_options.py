"""`ssetap record`'s pressure options: sizes and durations parsed, bad values one line, exit 2."""

from __future__ import annotations

import pytest

from recorder.cli import main
from recorder.commands.record import parse_duration, parse_size
from recorder.usage import UsageError


def test_sizes_and_durations() -> None:
    assert parse_size("--max-backlog", "256M") == 256 * 1024 * 1024
    assert parse_size("--max-backlog", "1g") == 1 << 30
    assert parse_size("--max-backlog", "4096") == 4096
    assert parse_duration("--max-lag", "2s") == 2.0
    assert parse_duration("--max-lag", "500ms") == 0.5
    assert parse_duration("--stop-timeout", "1m") == 60.0


@pytest.mark.parametrize("option, value", [("--max-backlog", "0"), ("--max-backlog", "lots"),
                                           ("--max-lag", "-1s"), ("--stop-timeout", "10 parsecs")])
def test_bad_values_are_one_line_and_exit_2(tmp_path, capsys, option, value) -> None:
    code = main(["record", "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0",
                 "--db", str(tmp_path / "c.db"), option, value])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and option in err
    assert not (tmp_path / "c.db").exists()


def test_parse_errors_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        parse_size("--max-backlog", "")
