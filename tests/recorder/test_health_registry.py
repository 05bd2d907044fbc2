"""The registry of flag kinds and the lint's rule table are the truth; the README follows them."""

from __future__ import annotations

import re
from pathlib import Path

from recorder.health import FLAG_KINDS, KINDS
from recorder.health.registry import TRANSPORTS, VERSIONS, markdown_table
from recorder.health.spec import rules as lint_rules

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
HEALTH = Path(__file__).resolve().parents[2] / "recorder" / "health"


def _between(name: str) -> str:
    match = re.search(rf"<!-- {name}:[^>]*-->\n(.*?)\n<!-- /{name} -->", README, re.S)
    assert match, f"README has no generated {name} table"
    return match.group(1)


def test_readme_kind_table_is_the_registry() -> None:
    assert _between("kinds") == markdown_table()


def test_readme_rule_table_is_the_lint_table() -> None:
    assert _between("rules") == lint_rules.markdown_table()


def test_every_kind_is_complete_and_raised_by_a_concern_module() -> None:
    assert [k.name for k in KINDS] == list(FLAG_KINDS)
    for kind in KINDS:
        assert kind.severity in ("info", "warning", "error")
        assert kind.summary and kind.cause and not kind.cause.endswith(".")
        assert set(kind.versions) <= set(VERSIONS) and set(kind.transports) <= set(TRANSPORTS)
        if kind.raised_by:  # raised by the recorder itself, not by a detector
            source = (HEALTH.parents[1] / kind.raised_by).read_text()
            assert kind.concern == "recorder" and kind.name in source, kind.name
            continue
        module = HEALTH / ("spec/lint.py" if kind.concern == "spec" else f"{kind.concern}.py")
        constant = kind.name.upper().replace("-", "_")
        source = module.read_text() if kind.concern != "spec" else \
            (HEALTH / "monitor.py").read_text()
        assert module.exists() and constant in source, (kind.name, module)


def test_lint_rule_ids_are_stable_and_unique() -> None:
    ids = [r.id for r in lint_rules.RULES]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids)
    assert all(set(r.versions) <= set(VERSIONS) and r.section for r in lint_rules.RULES)
