"""`ssetap import` of an ssetap JSONL archive (`ssetap export --format jsonl`): rows restored.

The archive holds rows, ids included, so they are written back as they were (into a new or
empty capture: ids from another capture would collide). Every line is checked before it is
written: a foreign or damaged file fails with one line and leaves no partial capture behind
(the caller removes a capture it created).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson

from recorder.formats import FormatError
from recorder.importing import ImportSummary, existing_rows
from recorder.store import SCHEMA_VERSION, TABLES, StoreWriter

_HEAD = b'{"type":"header","format":"ssetap-jsonl"'
# Rows queued for the writer before reading waits for it (memory stays bounded).
MAX_BACKLOG = 20_000
# Meta keys the new capture sets itself.
_OWN_META = frozenset({"format", "schema_version"})


def sniff(head: bytes) -> bool:
    return head.lstrip().startswith(_HEAD)


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"base64"}:
            raise ValueError("a column value that is an object other than {\"base64\": ...}")
        return base64.b64decode(value["base64"], validate=True)
    return value


def load(path: Path, db: Path, *, raw: bool = False) -> ImportSummary:
    if existing_rows(db):
        raise FormatError(f"{db} already holds a capture; a JSONL archive is restored into a "
                          "new file (its row ids would collide)")
    counts = dict.fromkeys(TABLES, 0)
    ended = False
    with open(path, "rb") as f:
        header = _parse(f.readline(), 1)
        if header.get("type") != "header" or header.get("format") != "ssetap-jsonl":
            raise FormatError(f"{path}: not an ssetap JSONL archive")
        if int(header.get("schema_version", 0)) > SCHEMA_VERSION:
            raise FormatError(f"{path}: archive of capture schema v{header['schema_version']}, "
                              f"newer than this ssetap (v{SCHEMA_VERSION})")
        writer = StoreWriter(db)
        try:
            for number, line in enumerate(f, start=2):
                if not line.strip():
                    continue
                if ended:
                    raise FormatError(f"{path}:{number}: data after the end line")
                item = _parse(line, number)
                kind = item.get("type")
                if kind == "meta":
                    if item["key"] not in _OWN_META:
                        writer.set_meta(str(item["key"]), str(item["value"]))
                elif kind == "row":
                    table = item.get("table")
                    if table not in counts or not isinstance(item.get("row"), dict):
                        raise FormatError(f"{path}:{number}: a row of no known table")
                    try:
                        row = {k: _decode_value(v) for k, v in item["row"].items()}
                    except ValueError as exc:
                        raise FormatError(f"{path}:{number}: {exc}") from None
                    writer.insert(table, row)
                    counts[table] += 1
                    if writer.backlog() > MAX_BACKLOG:
                        writer.flush(timeout=None)  # the file reads faster than SQLite writes
                elif kind == "end":
                    said = item.get("rows")
                    if not isinstance(said, dict) or {k: v for k, v in said.items() if v} != \
                            {k: v for k, v in counts.items() if v}:
                        raise FormatError(f"{path}:{number}: the end line counts {item.get('rows')}"
                                          f" rows, the archive holds {counts}")
                    ended = True
                else:
                    raise FormatError(f"{path}:{number}: unknown line type {kind!r}")
            if not ended:
                raise FormatError(f"{path}: the archive was cut short (no end line)")
            writer.set_meta("imported_from", f"jsonl:{path.name}")
        finally:
            writer.close()
    return ImportSummary("jsonl", counts["exchanges"], counts["sessions"], counts["messages"],
                         approximate="")


def _parse(line: bytes, number: int) -> dict[str, Any]:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise FormatError(f"line {number} is not JSON") from None
    if not isinstance(item, dict):
        raise FormatError(f"line {number} is not a JSON object")
    return item
