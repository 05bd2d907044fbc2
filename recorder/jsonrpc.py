"""Decode JSON-RPC payloads (single messages and batches) and classify each message.

Classification order follows mcp-wire.md §5: `method` with `id` is a request, `method` without
`id` a notification, then `result`, then `error`; anything else is invalid. An id keeps its JSON
type through `id_key` (its canonical JSON text), because `1` and `"1"` are different ids.
"""

from __future__ import annotations

from typing import Any

import orjson

from recorder.model import ERROR, INVALID, NOTIFICATION, REQUEST, RESULT, RpcMessage


def id_key(value: Any) -> str:
    """The canonical JSON text of an id: `1` -> '1', `"1"` -> '"1"'."""
    return orjson.dumps(value).decode()


def classify(obj: Any, batch_index: int | None = None) -> RpcMessage:
    """Classify one decoded JSON value as a JSON-RPC message."""
    if not isinstance(obj, dict):
        return RpcMessage(INVALID, None, None, obj, batch_index, "not a JSON object")
    method = obj.get("method")
    has_id = "id" in obj
    key = id_key(obj["id"]) if has_id else None
    if obj.get("jsonrpc") != "2.0":
        problem: str | None = "missing or wrong \"jsonrpc\" member"
    else:
        problem = None
    if isinstance(method, str):
        if has_id and obj["id"] is not None:
            kind = REQUEST
        elif has_id:
            kind, problem = REQUEST, problem or "request id is null"
        else:
            kind = NOTIFICATION
        return RpcMessage(kind, method, key, obj, batch_index, problem)
    if "result" in obj:
        return RpcMessage(RESULT, None, key, obj, batch_index, problem)
    if "error" in obj:
        error = obj["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            problem = problem or "error member without an integer code"
        return RpcMessage(ERROR, None, key, obj, batch_index, problem)
    return RpcMessage(INVALID, None, key, obj, batch_index, "neither request, notification nor response")


def decode(payload: bytes | str) -> list[RpcMessage]:
    """Decode a POST body, JSON response or SSE data into messages (a batch gives several).

    Empty or whitespace-only payloads give no message; undecodable ones give one INVALID
    message whose `problem` says why.
    """
    if not payload or payload.isspace():
        return []
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return [RpcMessage(INVALID, None, None, None, None, f"invalid JSON: {exc}")]
    if isinstance(obj, list):
        if not obj:
            return [RpcMessage(INVALID, None, None, obj, None, "empty batch")]
        return [classify(item, i) for i, item in enumerate(obj)]
    return [classify(obj)]


def stored_payload(text: Any) -> Any:
    """A stored message's JSON text decoded again (None for no text, or text not JSON)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def error_fields(payload: Any) -> tuple[int | None, str | None]:
    """The code and message of an error response, when present and well-formed."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code")
    message = error.get("message")
    return (code if isinstance(code, int) else None, message if isinstance(message, str) else None)
