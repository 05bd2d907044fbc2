"""Listening rules shared by `record` and `serve` (pure): `--listen HOST:PORT`, loopback by
default, what a non-loopback listener needs, and where a regular proxy may forward."""

from __future__ import annotations

import ipaddress


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or a bare `PORT` (on 127.0.0.1); raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen needs HOST:PORT with a port number, got {value!r}")
    return host, int(port)


# --- Who may reach a listener, and where a regular proxy may forward (pure) -------------------


class ListenError(ValueError):
    """A listen address or forwarding rule that ssetap refuses; the message says what to add."""


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP literal or `localhost`) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name (or 0.0.0.0/::, which parse but are not loopback)


def parse_hostport(value: str) -> tuple[str, int]:
    """An allow-list entry: `HOST:PORT` (`[::1]:PORT` for IPv6)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]").lower()
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ListenError(f"--allow-upstream needs HOST:PORT, got {value!r}")
    return host, int(port)


def upstream_allowed(host: str, port: int, allow: tuple[tuple[str, int], ...]) -> bool:
    """Whether a regular proxy may forward to `host:port` (an empty allow-list allows all)."""
    if not allow:
        return True
    return (host.strip("[]").lower(), port) in allow


def check_exposure(host: str, *, mode: str, allow_remote: bool, proxy_auth: bool,
                   allow: tuple[tuple[str, int], ...]) -> str | None:
    """The rules for a non-loopback listener; returns the warning to print, or None.

    Loopback needs nothing. Anything else must be asked for (`--allow-remote`); a regular
    proxy on the network must also authenticate its clients and forward only to an allow-list,
    or it is an open proxy into every loopback-only service of this machine.
    """
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ListenError(f"refusing to listen on {host}: it is reachable from the network; "
                          "add --allow-remote if that is what you want")
    if mode == "regular" and not (proxy_auth and allow):
        raise ListenError(f"a regular proxy on {host} would be open to the network: it needs "
                          "--proxy-auth and at least one --allow-upstream HOST:PORT")
    return (f"warning: listening on {host}, reachable from the network"
            + ("; clients must authenticate and may reach only "
               + ", ".join(f"{h}:{p}" for h, p in allow) if mode == "regular" else ""))
