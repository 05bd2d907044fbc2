"""The detectors' input, in one place: the recorder's `Observation`s and the fields they read.

Every detector module (streams, reconnects, calls, sessions, security, spec) is fed the same
`recorder.ingest.Observation` values in time order, live from the ingest or rebuilt from a
stored capture by recorder.check. This table lists, per observation kind, the row fields the
detectors rely on; anything else in a row is ignored. When ingest's outputs become typed
frozen events (one dataclass per kind, as mitmproxy's hooks.py declares them), this is the
module that maps them, and the detectors need not change.
"""

from __future__ import annotations

from typing import Final

from recorder.ingest import Observation

__all__ = ["FIELDS", "Observation"]

FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "session": ("id", "key", "transport", "client_addr", "user_agent", "protocol_version",
                "requested_protocol_version"),
    "exchange": ("id", "method", "url", "path", "request_headers", "client_addr", "mcp"),
    "response": ("id", "status", "response_headers", "response_content_type", "session_id",
                 "mcp"),
    "stream-open": ("id", "exchange_id", "session_id", "method", "role",
                    "last_event_id_sent"),
    "chunk": ("stream_id", "session_id"),
    "sse": ("stream_id", "session_id", "kind", "type", "data", "event_id", "retry"),
    "stream-close": ("id", "session_id", "close_reason", "retry_ms"),
    "exchange-end": ("id", "session_id", "error", "mcp", "response_body"),
    "message": ("id", "session_id", "exchange_id", "stream_id", "direction", "kind", "method",
                "rpc_id", "json", "batch_index", "problem", "call_id"),
    "tick": (),
}
