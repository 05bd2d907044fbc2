"""The check's report writers, pure: SARIF 2.1.0 and the shared JUnit writer."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

from recorder.check import CheckResult, junit_report
from recorder.health import KINDS
from recorder.junit import ERROR, FAILURE, JunitCase, JunitProblem, JunitSuite, render
from recorder.model import Flag
from recorder.sarif import sarif_report

SESSION = {"id": 3, "key": "sid:x", "transport": "streamable-http",
           "server": "http://127.0.0.1:1", "endpoint": "/mcp", "started_at": 0.0}


def _result() -> CheckResult:
    flags = (
        Flag("request-cancelled", "info", 1.0, "cancelled", session_id=3, call_id=7,
             details={"subject": "3/c2s/2/5"}),
        Flag("spec-violation", "warning", 2.0, "[post-accept] no Accept", session_id=3,
             details={"subject": "spec/post-accept/session/3", "rule": "post-accept"}),
        Flag("reconnect-storm", "error", 3.0, "storm", session_id=3, stream_id=4,
             details={"subject": "a/b", "sessions": [3, 4]}),
    )
    return CheckResult("captures/c.db", flags, (False, True, False), (SESSION,), 3.0)


def test_sarif_has_one_result_per_flag_with_rules_from_the_registry() -> None:
    log = sarif_report(_result())
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "ssetap"
    ids = [r["id"] for r in driver["rules"]]
    assert ids[:len(KINDS)] == [k.name for k in KINDS]
    levels = [r["level"] for r in run["results"]]
    assert levels == ["note", "warning", "error"]
    assert [r["ruleId"] for r in run["results"]] == [
        "request-cancelled", "spec-violation/post-accept", "reconnect-storm"]
    for result in run["results"]:
        assert ids[result["ruleIndex"]] == result["ruleId"]
        assert result["partialFingerprints"]["ssetapSubject/v1"].startswith(
            result["ruleId"].split("/")[0])
    storm = run["results"][2]
    names = [loc["name"] for loc in storm["locations"][0]["logicalLocations"]]
    assert names == ["session 3", "stream 4"]
    assert storm["properties"]["details"]["sessions"] == [3, 4]
    assert run["results"][1]["properties"]["seen_live"] is True
    orjson.dumps(log)  # JSON-ready as it is


def test_check_junit_fails_the_session_with_an_error() -> None:
    root = ET.fromstring(junit_report(_result(), "error"))
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "1", "0")
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("type") == "reconnect-storm"
    assert "[error] reconnect-storm: storm" in (failure.text or "")
    out = suite.find("testcase/system-out")
    assert out is not None and "[info] request-cancelled" in (out.text or "")


def test_junit_writer_counts_failures_and_errors_per_suite() -> None:
    xml = render("ssetap test", [JunitSuite("s", (
        JunitCase("c", "ok", 0.25),
        JunitCase("c", "bad", problem=JunitProblem(FAILURE, "differs", "differs", "a\nb")),
        JunitCase("c", "broken", problem=JunitProblem(ERROR, "error", "boom")),
    ))])
    assert xml.startswith('<?xml version="1.0" encoding="utf-8"?>\n') and xml.endswith("\n")
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    case = suite.find("testcase")
    assert case is not None and case.get("time") == "0.250"


def test_check_sarif_to_an_unwritable_path_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recorder.cli import main
    from recorder.store import StoreWriter

    db = tmp_path / "empty.db"
    StoreWriter(db).close()
    assert main(["check", str(db), "--no-store", "--sarif",
                 str(tmp_path / "missing" / "x.sarif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err
    assert main(["check", str(db), "--no-store", "--sarif", str(tmp_path / "ok.sarif")]) == 0
    log = orjson.loads((tmp_path / "ok.sarif").read_bytes())
    assert log["runs"][0]["results"] == []
