"""The table of capture formats that `ssetap export` and `ssetap import` dispatch on.

One row per format: its name, what it holds, the module that writes it and the module that
reads it (each optional), and which times an import of it can only approximate. The commands,
the README table and the docs test are driven by this table; the modules load lazily, so
building the CLI's parser imports none of them.

An exporter module has `export(capture, out, options) -> int` (items written); an importer
module has `sniff(head) -> bool` (whether the first bytes of a file look like its format) and
`load(path, target) -> ImportSummary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType


@dataclass(frozen=True, slots=True)
class Format:
    """One capture format and the modules that write and read it."""

    name: str
    summary: str
    exporter: str | None
    importer: str | None
    approximate: str  # times an import cannot know exactly ("" when all are exact)


FORMATS: tuple[Format, ...] = (
    Format("jsonl", "ssetap's lossless archive: every row of the capture, one JSON object a line",
           "recorder.exporting.jsonl", "recorder.importing.jsonl", ""),
    Format("har", "HAR 1.2, one entry per HTTP exchange, SSE events in `_sseEvents`",
           "recorder.exporting.har", "recorder.importing.har",
           "chunk times (one chunk per SSE event, at the event's time); SSE event times when "
           "the HAR has no `_sseEvents` (all at the response's end); times to the millisecond"),
    Format("otlp", "OpenTelemetry traces as OTLP/JSON lines (the file exporter's format)",
           "recorder.exporting.otlp", None, ""),
    Format("mitmproxy", "mitmproxy flow files (`mitmdump -w`)", None,
           "recorder.importing.mitmflow",
           "chunk and SSE event times (mitmproxy keeps whole bodies: every event at the "
           "response's end)"),
)

BY_NAME = {f.name: f for f in FORMATS}
EXPORT_FORMATS = tuple(f.name for f in FORMATS if f.exporter)
IMPORT_FORMATS = tuple(f.name for f in FORMATS if f.importer)


class FormatError(Exception):
    """A file that is not in any importable format, or is damaged; one line for the user."""


def exporter(name: str) -> ModuleType:
    fmt = BY_NAME[name]
    assert fmt.exporter is not None, name
    return import_module(fmt.exporter)


def importer(name: str) -> ModuleType:
    fmt = BY_NAME[name]
    assert fmt.importer is not None, name
    return import_module(fmt.importer)


def sniff(head: bytes) -> Format | None:
    """The importable format whose importer recognises these first bytes of a file."""
    for fmt in FORMATS:
        if fmt.importer and importer(fmt.name).sniff(head):
            return fmt
    return None
