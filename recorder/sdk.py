"""Which generation of the official MCP Python SDK is installed: the one seam between v1 and v2.

ssetap installs beside whatever `mcp` a user's project already has, so its demo server, demo
client and tests pick the SDK's API at run time instead of pinning one:

- v1 (`mcp<2`): `FastMCP`, `ClientSession` over `sse_client` / `streamable_http_client`,
  `initialize` and `Mcp-Session-Id`; its JSON-RPC error exception is `McpError`.
- v2 (`mcp>=2`): `MCPServer` and `mcp.Client`, which speaks the 2026-07-28 revision
  (`server/discover`, no sessions) to a v2 server; the exception is `MCPError`.

Everything that differs between the two is answered here, so no other module checks versions.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


class SdkMissingError(Exception):
    """The official `mcp` SDK is not installed in this environment."""


@cache
def mcp_version() -> str:
    """The installed `mcp` distribution's version, e.g. "2.3.0"."""
    try:
        return version("mcp")
    except PackageNotFoundError:
        raise SdkMissingError("the official MCP SDK (`mcp`) is not installed") from None


def generation() -> int:
    """1 for `mcp<2` (FastMCP), 2 for `mcp>=2` (MCPServer, mcp.Client)."""
    major = mcp_version().split(".", 1)[0]
    return 2 if major.isdigit() and int(major) >= 2 else 1


def describe() -> str:
    """One phrase for the console: which SDK and which of its APIs the demo uses."""
    if generation() >= 2:
        return f"mcp {mcp_version()} (SDK v2: MCPServer and mcp.Client, revision 2026-07-28)"
    return f"mcp {mcp_version()} (SDK v1: FastMCP and ClientSession)"


def error_class() -> type[Exception]:
    """The SDK's exception for a JSON-RPC error answer (`McpError` in v1, `MCPError` in v2)."""
    from mcp.shared import exceptions

    name = "MCPError" if generation() >= 2 else "McpError"
    cls: type[Exception] = getattr(exceptions, name)
    return cls


def is_error_result(result: object) -> bool:
    """A tool result's error marker: `isError` in v1's types, `is_error` in v2's."""
    value = getattr(result, "is_error", None)
    if value is None:
        value = getattr(result, "isError", False)
    return bool(value)


# The revision that removed `ping` (with sessions and `initialize`): see mcp-wire.md 2.11.
SESSIONLESS_REVISION = "2026-07-28"


def has_ping(protocol_version: str) -> bool:
    """Whether the negotiated revision still has the `ping` request."""
    return protocol_version < SESSIONLESS_REVISION
