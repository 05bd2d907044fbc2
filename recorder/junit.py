"""The one JUnit XML writer, shared by `ssetap check` and `ssetap replay`: typed cases in, XML out.

JUnit has no formal schema; this writes the subset CI dashboards read (GitLab, Jenkins,
GitHub test reporters): `testsuites` > `testsuite` (name, tests, failures, errors) >
`testcase` (classname, name, time) with at most one `failure` or `error` and an optional
`system-out`. Standard library only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

FAILURE = "failure"
ERROR = "error"


@dataclass(frozen=True, slots=True)
class JunitProblem:
    """Why a case did not pass: a `failure` (an expectation unmet) or an `error` (it broke)."""

    tag: str  # FAILURE or ERROR
    type: str
    message: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class JunitCase:
    classname: str
    name: str
    time: float | None = None
    problem: JunitProblem | None = None
    system_out: str | None = None


@dataclass(frozen=True, slots=True)
class JunitSuite:
    name: str
    cases: tuple[JunitCase, ...]


def render(name: str, suites: Sequence[JunitSuite]) -> str:
    """The XML document (indented, with a declaration, ending in a newline)."""
    root = ET.Element("testsuites", name=name)
    for suite in suites:
        problems = [c.problem for c in suite.cases if c.problem is not None]
        element = ET.SubElement(root, "testsuite", {
            "name": suite.name,
            "tests": str(len(suite.cases)),
            "failures": str(sum(p.tag == FAILURE for p in problems)),
            "errors": str(sum(p.tag == ERROR for p in problems)),
        })
        for case in suite.cases:
            attributes = {"classname": case.classname, "name": case.name}
            if case.time is not None:
                attributes["time"] = f"{case.time:.3f}"
            item = ET.SubElement(element, "testcase", attributes)
            if case.problem is not None:
                problem = ET.SubElement(item, case.problem.tag, {
                    "type": case.problem.type, "message": case.problem.message})
                problem.text = case.problem.text or None
            if case.system_out is not None:
                ET.SubElement(item, "system-out").text = case.system_out
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"
