"""Read-only capture connections for worker threads, and what the UI knows about a session."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recorder.store import BrowseReader


class ReaderPool:
    """Hands each worker thread a `BrowseReader` of its own, reusing idle ones.

    SQLite connections must not run two statements at once from two threads, and a fresh
    connection per query would throw away SQLite's page cache; a small pool does neither.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._idle: list[BrowseReader] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def reader(self) -> Iterator[BrowseReader]:
        with self._lock:
            reader = self._idle.pop() if self._idle else None
        if reader is None:
            reader = BrowseReader(self.path)
        try:
            yield reader
        finally:
            with self._lock:
                if self._closed:
                    reader.close()
                else:
                    self._idle.append(reader)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for reader in idle:
            reader.close()


class ChangeWatcher:
    """Says whether anyone committed to the capture since the last look.

    `PRAGMA data_version` changes only for commits by *other* connections, and only when asked
    on the same connection, so the watcher keeps one of its own.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: BrowseReader | None = None
        self._last: int | None = None
        self._lock = threading.Lock()

    def changed(self) -> bool:
        with self._lock:
            if self._reader is None:
                self._reader = BrowseReader(self.path)
            version = self._reader.data_version()
            changed = version != self._last
            self._last = version
            return changed

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
