"""Unit tests of replay.diff: paths, patterns, rules files, set-like lists, volatile values."""

from __future__ import annotations

import pytest

from replay.diff import (
    DEFAULT_RULES,
    MISSING,
    Difference,
    DiffOptions,
    IgnoreRule,
    RulesError,
    diff,
    format_path,
    parse_pattern,
    parse_rules,
    pattern_matches,
)

STRICT = DiffOptions(rules=(), volatile_values=False)


@pytest.mark.parametrize(("path", "text"), [
    ((), "$"),
    (("result", "content", 0, "text"), "$.result.content[0].text"),
    (("result", "tools", ("name", "echo"), "description"), "$.result.tools[name=echo].description"),
    (("a key", "x-y"), '$["a key"].x-y'),
    (("r", ("uri", "demo://x?a=b")), '$.r[uri="demo://x?a=b"]'),
    (("say \"hi\"",), '$["say \\"hi\\""]'),
])
def test_paths_print_as_patterns_that_match_them(path: tuple, text: str) -> None:
    assert format_path(path) == text
    assert pattern_matches(parse_pattern(text), path)


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("$.result.content[*].text", ("result", "content", 3, "text"), True),
    ("$.result.content[*].text", ("result", "content", 3, "type"), False),
    ("$..text", ("result", "content", 0, "text"), True),
    ("$..text", ("text",), True),
    ("$.._meta", ("result", "tools", ("name", "a"), "_meta"), True),
    ("$.result.tools[name=ec*]", ("result", "tools", ("name", "echo")), True),
    ("$.result.tools[name=ec*]", ("result", "tools", ("name", "add")), False),
    ("$.result.tools[*].title", ("result", "tools", ("name", "add"), "title"), True),
    ("$.result.*", ("result", "isError"), True),
    ("$.result", ("result", "isError"), False),  # exact: the walk checks every prefix
    ("$['a key']", ("a key",), True),
])
def test_pattern_matching(pattern: str, path: tuple, hit: bool) -> None:
    assert pattern_matches(parse_pattern(pattern), path) is hit


@pytest.mark.parametrize("bad", ["result.x", "$.a[", "$.a[x y]", "$.", "$.a['x]"])
def test_bad_patterns_are_rejected(bad: str) -> None:
    with pytest.raises(RulesError):
        parse_pattern(bad)


def test_rules_file_format() -> None:
    rules = parse_rules(
        "# comment line\n"
        "\n"
        "$.result.serverInfo.version   # trailing comment\n"
        "tools/call $..structuredContent\n"
        "tools/call:echo $.result.content[*].text\n"
        "resources/* $.result.contents[*].text\n"
    )
    assert [(r.method, r.name, r.path) for r in rules] == [
        (None, None, "$.result.serverInfo.version"),
        ("tools/call", None, "$..structuredContent"),
        ("tools/call", "echo", "$.result.content[*].text"),
        ("resources/*", None, "$.result.contents[*].text"),
    ]
    assert rules[2].applies_to("tools/call", "echo")
    assert not rules[2].applies_to("tools/call", "add")
    assert rules[3].applies_to("resources/read", "demo://x")


def test_rules_errors_name_the_line() -> None:
    with pytest.raises(RulesError, match=r"^my\.rules:2: "):
        parse_rules("$.ok\ntools/call content.text\n", source="my.rules")
    with pytest.raises(RulesError, match=r"^rules:1: .*missing"):
        parse_rules("tools/call\n")


def test_nested_differences_with_paths() -> None:
    expected = {"result": {"content": [{"type": "text", "text": "hi"}], "isError": False}}
    actual = {"result": {"content": [{"type": "text", "text": "HI"}, {"type": "text"}],
                         "extra": 1}}
    assert diff(expected, actual, options=STRICT) == [
        Difference("$.result.content[0].text", "hi", "HI"),
        Difference("$.result.content[1]", MISSING, {"type": "text"}),
        Difference("$.result.isError", False, MISSING),
        Difference("$.result.extra", MISSING, 1),
    ]


def test_numbers_compare_by_value_but_not_with_bools() -> None:
    assert diff({"a": 1, "b": 2.5}, {"a": 1.0, "b": 2.5}, options=STRICT) == []
    assert diff({"a": 1}, {"a": True}, options=STRICT) == [Difference("$.a", 1, True)]
    assert diff({"a": None}, {"a": 0}, options=STRICT) == [Difference("$.a", None, 0)]


def test_set_like_lists_ignore_order_and_name_members() -> None:
    tools = [{"name": "echo", "description": "e"}, {"name": "add", "description": "a"}]
    reordered = [{"name": "add", "description": "a"}, {"name": "echo", "description": "E"}]
    assert diff({"tools": tools}, {"tools": reordered}, options=STRICT) == [
        Difference("$.tools[name=echo].description", "e", "E"),
    ]
    assert diff({"tools": tools}, {"tools": tools[:1]}, options=STRICT) == [
        Difference("$.tools[name=add]", tools[1], MISSING),
    ]
    resources = [{"uri": "demo://a"}, {"uri": "demo://b"}]
    assert diff({"resources": resources}, {"resources": resources[::-1]}, options=STRICT) == []
    # Not uniquely keyed: compared by position.
    duplicates = [{"name": "x", "v": 1}, {"name": "x", "v": 2}]
    assert diff({"tools": duplicates}, {"tools": duplicates[::-1]}, options=STRICT) == [
        Difference("$.tools[0].v", 1, 2), Difference("$.tools[1].v", 2, 1),
    ]


def test_default_rules_ignore_volatile_values() -> None:
    expected = {"result": {"_meta": {"a": 1}, "sessionId": "abc",
                           "created": "2024-01-01T00:00:00Z", "id": "9f1c" * 8,
                           "items": [{"timestamp": 1}], "text": "same"}}
    actual = {"result": {"_meta": {"a": 2}, "sessionId": "xyz",
                         "created": "2026-11-24 02:23:41.093524+00:00", "id": "0b6e" * 8,
                         "items": [{"timestamp": 2}], "text": "same"}}
    assert diff(expected, actual) == []
    assert len(diff(expected, actual, options=STRICT)) == 5
    # Only both-volatile pairs are forgiven: a timestamp turning into text is a difference.
    assert diff({"t": "2024-01-01T00:00:00Z"}, {"t": "soon"}) == [
        Difference("$.t", "2024-01-01T00:00:00Z", "soon")]


def test_user_rules_scope_by_method_and_name() -> None:
    rule = IgnoreRule.parse("$.result.content[*].text", "tools/call", "echo")
    options = DiffOptions(DEFAULT_RULES + (rule,))
    expected = {"result": {"content": [{"text": "a"}]}}
    actual = {"result": {"content": [{"text": "b"}]}}
    assert diff(expected, actual, options=options, method="tools/call", name="echo") == []
    assert len(diff(expected, actual, options=options, method="tools/call", name="add")) == 1
    assert len(diff(expected, actual, options=options, method="prompts/get")) == 1


def test_difference_count_is_bounded() -> None:
    expected = {"xs": list(range(100))}
    actual = {"xs": [x + 1 for x in range(100)]}
    assert len(diff(expected, actual, options=DiffOptions(max_differences=7))) == 7
