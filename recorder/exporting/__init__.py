"""Exporters: one module per format (see `recorder.formats`), each `export(capture, out, options)`.

This package holds what they share: the options value and the redaction stage applied again to
what leaves a raw capture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recorder.redact import Redactor

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What every exporter is told: which session, how to redact, where progress goes."""

    session_id: int | None = None
    # Set when the capture was recorded raw and the export must not be: rows pass through
    # `recorder.exporting.redaction.RowRedaction` on their way out.
    redactor: Redactor | None = None
    progress: Progress | None = None
