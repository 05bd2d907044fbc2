"""Read-only SQL over a capture file, for assertions in the recorder's end-to-end tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def q(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
