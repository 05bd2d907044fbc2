"""Parse a `--listen HOST:PORT` value (shared by `record` and `serve`; pure)."""

from __future__ import annotations


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or a bare `PORT` (on 127.0.0.1); raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen needs HOST:PORT with a port number, got {value!r}")
    return host, int(port)
