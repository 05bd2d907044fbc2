"""What differs between the HTTP stacks ssetap runs on: mitmproxy 11 (Python 3.11) and 12 (3.12+).

The recorder's mitmproxy API use is the same on 11.0.2 and 12.3 (the addon hooks, `stream`
callables and options it needs exist on both), so the one difference that matters is safety:
mitmproxy 11.0.2 pins h11 0.14, whose lenient chunked-body parsing (CVE-2025-43859, fixed in
h11 0.16) lets a peer smuggle a second request through the proxy. On loopback that peer is
already on the machine; on a network-facing listener it is anyone, so `ssetap record` refuses a
non-loopback `--listen` on such a stack and names the fix.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from recorder.listen import is_loopback

# h11 0.16.0 fixed the chunked-encoding leniency (CVE-2025-43859).
FIXED_H11 = (0, 16)


def _release(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def smuggling_risk(h11_version: str | None = None) -> str | None:
    """Why this HTTP stack is unsafe on a network-facing listener, or None when it is safe."""
    if h11_version is None:
        try:
            h11_version = version("h11")
        except PackageNotFoundError:
            return None
    if _release(h11_version) >= FIXED_H11:
        return None
    return (f"h11 {h11_version} (pinned by mitmproxy 11 on Python 3.11) parses chunked bodies "
            "leniently (CVE-2025-43859), so a network peer could smuggle requests through the "
            "proxy")


def refuse_exposed_listen(host: str, h11_version: str | None = None) -> str | None:
    """The one-line refusal for listening on `host` with this stack, or None when allowed."""
    if is_loopback(host):
        return None
    risk = smuggling_risk(h11_version)
    if risk is None:
        return None
    return (f"refusing to listen on {host}: {risk}; listen on 127.0.0.1, or run ssetap on "
            "Python 3.12+ (mitmproxy 12 with h11 0.16+)")
