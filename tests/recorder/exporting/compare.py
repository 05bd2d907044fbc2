"""What must match between a recorded capture and one imported from another format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recorder.store import Capture


def sessions_and_calls(db: Path) -> list[dict[str, Any]]:
    """Per MCP session: its transport, peers, protocol, and its calls in order (with outcome).

    Session keys are pseudonyms under each capture's own key, and server URLs depend on where
    the file was written, so neither is compared.
    """
    out = []
    with Capture(db) as capture:
        for s in capture.sessions():
            calls = [(c["direction"], c["rpc_id"], c["method"], c["name"], c["outcome"],
                      c["error_code"], c["progress_count"]) for c in capture.calls(s["id"])]
            out.append({"transport": s["transport"], "client": s["client_name"],
                        "server": s["server_name"], "protocol": s["protocol_version"],
                        "messages": s["messages"], "calls": calls})
    return out
