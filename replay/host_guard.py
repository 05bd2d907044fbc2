"""Host and Origin checks for `ssetap serve`, as the SDK servers make them (DNS rebinding).

A page on any web site can make a browser send requests to 127.0.0.1 under a name it controls
(DNS rebinding): the request then carries that name in `Host`, or the page's own origin in
`Origin`. A mock that answers them would hand recorded tool results to the page. So, like the
SDK's `TransportSecuritySettings`: `Host` must name a loopback host (any port) or one the user
allowed, answered 421 otherwise; an `Origin`, when present, must be a loopback origin (any
port) or one allowed, answered 403 otherwise. Patterns are exact or end in `:*` (any port).
The ASGI middleware is a thin shell around the pure `HostRules.check`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    value = value.lower()
    for pattern in patterns:
        if value == pattern:
            return True
        prefix = pattern[:-1]
        if pattern.endswith(":*") and value.startswith(prefix) and value[len(prefix):].isdigit():
            return True
    return False


@dataclass(frozen=True, slots=True)
class HostRules:
    """Allowed `Host` and `Origin` values (exact, or `name:*` for any port)."""

    hosts: tuple[str, ...] = LOOPBACK_HOSTS
    origins: tuple[str, ...] = LOOPBACK_ORIGINS

    @classmethod
    def for_listener(cls, listen_host: str, allow_hosts: Iterable[str] = (),
                     allow_origins: Iterable[str] = ()) -> HostRules:
        """Loopback, the address it listens on (when it is a specific one) and the user's."""
        hosts = list(LOOPBACK_HOSTS)
        origins = list(LOOPBACK_ORIGINS)
        if listen_host not in ("0.0.0.0", "::", ""):
            shown = f"[{listen_host}]" if ":" in listen_host else listen_host
            hosts.append(f"{shown}:*".lower())
            origins.append(f"http://{shown}:*".lower())
        for host in allow_hosts:
            hosts.append(_with_port(host.strip().lower()))
        for origin in allow_origins:
            origins.append(_with_port(origin.strip().lower().rstrip("/")))
        return cls(tuple(hosts), tuple(origins))

    def check(self, host: str | None, origin: str | None) -> tuple[int, str] | None:
        """None when allowed, else the status and body to answer with."""
        if not host or not _matches(host, self.hosts):
            return 421, "Invalid Host header"
        if origin and not _matches(origin.rstrip("/"), self.origins):
            return 403, "Invalid Origin header"
        return None


def _with_port(pattern: str) -> str:
    """`example.com` allows any port of it; `example.com:8080` that port only."""
    authority = pattern.split("//", 1)[-1]
    return pattern if ":" in authority.rsplit("]", 1)[-1] else f"{pattern}:*"


class HostGuard:
    """ASGI middleware answering requests with a foreign Host (421) or Origin (403)."""

    def __init__(self, app: App, rules: HostRules) -> None:
        self.app = app
        self.rules = rules
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        refusal = self.rules.check(headers.get("host"), headers.get("origin"))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        self.refused += 1
        status, text = refusal
        body = text.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
