"""The table of formats drives the commands and the README; sniffing tells formats apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder import formats
from recorder.cli import build_parser

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


@pytest.mark.parametrize("fmt", formats.FORMATS, ids=lambda f: f.name)
def test_every_format_is_documented_and_loads(fmt):
    assert f"| `{fmt.name}` |" in README, f"README's format table lacks {fmt.name}"
    if fmt.exporter:
        assert callable(formats.exporter(fmt.name).export)
    if fmt.importer:
        module = formats.importer(fmt.name)
        assert callable(module.load) and callable(module.sniff)


def test_the_commands_offer_exactly_the_table():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = sub.choices  # type: ignore[attr-defined]
    for command, names in (("export", formats.EXPORT_FORMATS), ("import", formats.IMPORT_FORMATS)):
        action = next(a for a in choices[command]._actions if a.dest == "format")
        assert tuple(action.choices) == names


@pytest.mark.parametrize(("head", "name"), [
    (b'{"type":"header","format":"ssetap-jsonl","version":1}\n', "jsonl"),
    (b'{\n  "log": {\n    "version": "1.2",\n    "entries": []', "har"),
    (b'{"log":{"version":"1.2","creator":{"name":"ssetap"}', "har"),
    (b"14:4:type;4:http,}", "mitmproxy"),
    (b"14:4:type;4:http,]", None),  # the length does not end at a dict
    (b"123456:9:websocket;0:~8:response;", "mitmproxy"),  # a flow bigger than the head
    (b"12: not a key}", None),
    (b"hello world", None),
    (b'{"resourceSpans": []}', None),
    (b"", None),
    (b"SQLite format 3\x00", None),
])
def test_sniffing(head, name):
    found = formats.sniff(head)
    assert (found.name if found else None) == name


def test_export_progress_only_for_long_exports():
    import io

    from recorder.commands.export import Progress

    now = [0.0]
    out = io.StringIO()
    progress = Progress("jsonl", out=out, clock=lambda: now[0])
    progress(10_000, 50_000)  # quick: nothing
    now[0] = 2.5
    progress(20_000, 50_000)
    now[0] = 2.7
    progress(30_000, 50_000)  # within a second of the last line: nothing
    now[0] = 3.6
    progress(40_000, 50_000)
    progress(50_000, 50_000)  # the end, once lines were shown
    assert out.getvalue().splitlines() == ["ssetap: export jsonl: 20000/50000",
                                           "ssetap: export jsonl: 40000/50000",
                                           "ssetap: export jsonl: 50000/50000"]
    quick = io.StringIO()
    fast = Progress("har", out=quick, clock=lambda: 0.0)
    fast(5, 5)
    assert quick.getvalue() == ""
