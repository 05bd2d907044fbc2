"""What a session's handshake says about it: client, server and protocol version.

Both SDK generations: `initialize` and its result (`clientInfo`, `serverInfo`,
`protocolVersion`), and the 2026-07-28 revision, whose requests carry client info and version
in `_meta` and whose `server/discover` result carries server info there. Pure: a decoded
message in, the session's new facts out (recorder.ingest stores them as `SessionLearned`).
"""

from __future__ import annotations

from typing import Any

from recorder.model import C2S, REQUEST, RESULT, S2C, RpcMessage


def session_facts(message: RpcMessage, direction: str, initialized: bool) -> dict[str, Any]:
    """The facts `message` teaches about its session (`initialized`: the handshake's answer
    was seen already, so later requests do not override what it said)."""
    payload = message.payload
    if not isinstance(payload, dict):
        return {}
    changes: dict[str, Any] = {}
    if message.kind == REQUEST and direction == C2S:
        params = payload.get("params")
        if not isinstance(params, dict):
            return changes
        info = None
        if message.method == "initialize":
            info = params.get("clientInfo")
            version = params.get("protocolVersion")
            if isinstance(version, str):
                changes["requested_protocol_version"] = version
        meta = params.get("_meta")
        if isinstance(meta, dict):
            # 2026-07-28: every request carries client info and version in `_meta`.
            for key, value in meta.items():
                if key.endswith("/clientInfo") and info is None:
                    info = value
                elif key.endswith("/protocolVersion") and isinstance(value, str) \
                        and not initialized:
                    changes["protocol_version"] = value
        if isinstance(info, dict) and not initialized:
            if isinstance(info.get("name"), str):
                changes["client_name"] = info["name"]
            if isinstance(info.get("version"), str):
                changes["client_version"] = info["version"]
    elif message.kind == RESULT and direction == S2C:
        result = payload.get("result")
        if not isinstance(result, dict):
            return changes
        info = result.get("serverInfo")
        meta = result.get("_meta")
        if not isinstance(info, dict) and isinstance(meta, dict):
            # 2026-07-28 (`server/discover`): server info travels in the result's `_meta`.
            info = next((v for k, v in meta.items() if k.endswith("/serverInfo")), None)
        if not isinstance(info, dict):
            return changes
        if isinstance(info.get("name"), str):
            changes["server_name"] = info["name"]
        if isinstance(info.get("version"), str):
            changes["server_version"] = info["version"]
        if isinstance(result.get("protocolVersion"), str):
            changes["protocol_version"] = result["protocolVersion"]
    return changes
