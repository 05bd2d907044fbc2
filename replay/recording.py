"""Load recorded sessions from a capture into frozen values for the planner and the mock.

This is replay's only door to the store: everything after it works on the values defined
here, so the planner, the diff and the mock's catalogue are testable without SQLite.
"""

from __future__ import annotations

import os
from typing import Any

from recorder.jsonrpc import stored_payload
from recorder.store import Capture, StoreError
from replay.recorded import (
    RecordedCall,
    RecordedExchange,
    RecordedMessage,
    RecordedSession,
    RecordedSseItem,
    RecordedStream,
    Recording,
    RecordingError,
)


def _session(row: dict[str, Any]) -> RecordedSession:
    return RecordedSession(
        id=row["id"], key=row["key"], transport=row["transport"], server=row["server"],
        endpoint=row["endpoint"], protocol_version=row["protocol_version"],
        started_at=row["started_at"],
    )


def _load(capture: Capture, session: dict[str, Any], *, with_streams: bool) -> Recording:
    sid = session["id"]
    messages = tuple(
        RecordedMessage(
            id=m["id"], t=m["t"], direction=m["direction"], kind=m["kind"], rpc_id=m["rpc_id"],
            method=m["method"], payload=stored_payload(m["json"]), call_id=m["call_id"],
            exchange_id=m["exchange_id"], stream_id=m["stream_id"],
            sse_event_id=m["sse_event_id"],
        )
        for m in capture.messages(sid)
    )
    calls = tuple(
        RecordedCall(
            id=c["id"], direction=c["direction"], rpc_id=c["rpc_id"], method=c["method"],
            name=c["name"], request_message_id=c["request_message_id"],
            response_message_id=c["response_message_id"], sent_at=c["sent_at"],
            answered_at=c["answered_at"], latency_ms=c["latency_ms"], outcome=c["outcome"],
            cancelled_at=c["cancelled_at"],
        )
        for c in capture.calls(sid)
    )
    exchanges: tuple[RecordedExchange, ...] = ()
    streams: tuple[RecordedStream, ...] = ()
    items: tuple[RecordedSseItem, ...] = ()
    if with_streams:
        exchanges = tuple(
            RecordedExchange(id=e["id"], method=e["method"], path=e["path"], status=e["status"],
                             response_content_type=e["response_content_type"],
                             started_at=e["started_at"])
            for e in capture.exchanges(sid)
        )
        streams = tuple(
            RecordedStream(id=s["id"], exchange_id=s["exchange_id"], method=s["method"],
                           role=s["role"], opened_at=s["opened_at"], closed_at=s["closed_at"])
            for s in capture.streams(sid)
        )
        items = tuple(
            RecordedSseItem(id=e["id"], stream_id=e["stream_id"], t=e["t"], kind=e["kind"],
                            type=e["type"], data=e["data"], event_id=e["event_id"],
                            retry=e["retry"])
            for e in capture.session_sse_events(sid)
        )
    separator = "\r\n"
    if streams:
        first = capture.chunks(streams[0].id)[:1]
        if first and b"\n" in first[0]["data"] and b"\r\n" not in first[0]["data"]:
            separator = "\n"
    return Recording(str(capture.path), _session(session), messages, calls, exchanges, streams,
                     items, separator)


def load_recordings(path: str | os.PathLike[str], session: str | None = None, *,
                    with_streams: bool = False) -> list[Recording]:
    """The sessions of a capture that have client messages (or the one `session` names).

    Raises StoreError for a file that is not a capture and RecordingError when there is
    nothing to replay.
    """
    with Capture(path) as capture:
        if session is not None:
            found = capture.find_session(session)
            if found is None:
                raise RecordingError(f"no session {session!r} in {path} (see `ssetap sessions`)")
            chosen = [found]
        else:
            chosen = [s for s in capture.sessions() if s["messages"]]
        recordings = [_load(capture, s, with_streams=with_streams) for s in chosen]
    recordings = [r for r in recordings if any(m.direction == "c2s" for m in r.messages)]
    if not recordings:
        where = f"session {session!r} of {path}" if session is not None else str(path)
        raise RecordingError(f"{where} holds no client messages to replay")
    return recordings


__all__ = [
    "RecordedCall", "RecordedExchange", "RecordedMessage", "RecordedSession", "RecordedSseItem",
    "RecordedStream", "Recording", "RecordingError", "StoreError", "load_recordings",
]
