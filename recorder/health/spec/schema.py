"""The `schema` rule's validator: params and results checked with the official `mcp-types`.

`mcp-types` is the MCP Python SDK's wire types per protocol revision (2025-11-25 for every
earlier version, 2026-07-28 for 2026), built from the specification's schema. This is the
only module that imports it (pydantic is heavy and not a pure-core dependency); the shells
hand `validate_message` to the lint. If the package is missing, nothing is validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recorder.model import C2S, S2C

# (mcp_types.methods, pydantic.ValidationError), imported at the first message, not with this
# module (pydantic is heavy), and kept: an import statement per message costs about 1 us.
_api: tuple[Any, Any] | None = None


def _schema_api() -> tuple[Any, Any] | None:
    global _api
    if _api is None:
        try:
            from mcp_types import methods
            from pydantic import ValidationError
        except ImportError:  # pragma: no cover - mcp-types is a dependency; tolerate its absence
            return None
        _api = (methods, ValidationError)
    return _api


def validate_message(direction: str, kind: str, method: str, version: str,
                     body: Any) -> str | None:
    """What is wrong with a message's params (requests, notifications) or result, if anything.

    Methods the schema of `version` does not define (extensions, custom methods) and
    versions it does not know are not judged: that is other rules' business.
    """
    api = _api or _schema_api()
    if api is None:
        return None
    methods, ValidationError = api
    if body is not None and not isinstance(body, Mapping):
        return f"{'result' if kind == 'result' else 'params'} is not an object"
    try:
        if direction == C2S and kind == "request":
            methods.validate_client_request(method, version, body)
        elif direction == C2S and kind == "notification":
            methods.validate_client_notification(method, version, body)
        elif direction == S2C and kind == "request":
            methods.parse_server_request(method, version, body)
        elif direction == S2C and kind == "notification":
            methods.parse_server_notification(method, version, body)
        elif direction == S2C and kind == "result":
            methods.validate_server_result(method, version, body or {})
        elif direction == C2S and kind == "result":
            methods.validate_client_result(method, version, body or {})
    except ValidationError as exc:
        return _summary(exc)
    except (KeyError, ValueError, RuntimeError, TypeError):
        return None  # not a method or version this schema defines
    return None


def _summary(exc: Any) -> str:
    """The first problems of a pydantic error, one line: `content: Input should be a list`."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "(top)"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
