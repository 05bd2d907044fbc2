"""The capture store: ssetap's only SQLite code, split by audience.

- `schema`: tables, migrations, the private file (StoreError lives here).
- `writer`: the recorder's single writer thread, write-failure handling, and the short-lived
  writers of offline tools; `recovery`: marking what a killed recorder left open.
- `event_rows`: how the recorder's typed events become rows, and stored rows events again.
- `readers`: read-only opening and `Capture`, for the CLI, `check` and replay.
- `browse`: `BrowseReader`, the TUI's keyset pages.

Everything other code needs is re-exported here: `from recorder.store import Capture, ...`.
"""

from __future__ import annotations

from recorder.store.browse import BrowseReader
from recorder.store.readers import Capture, iter_rows, meta, open_readonly, rows
from recorder.store.recovery import recover_interrupted
from recorder.store.schema import (
    FORMAT_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    StoreError,
    create_private,
    migrate,
    schema_version,
)
from recorder.store.writer import (
    StoreWriter,
    bulk_load,
    insert_many,
    recover_if_interrupted,
    replace_flags,
)

__all__ = [
    "FORMAT_NAME", "MIGRATIONS", "SCHEMA_VERSION", "TABLES", "BrowseReader", "Capture",
    "StoreError", "StoreWriter", "bulk_load", "create_private", "insert_many", "iter_rows",
    "meta", "migrate", "open_readonly", "recover_if_interrupted", "recover_interrupted",
    "replace_flags", "rows", "schema_version",
]
