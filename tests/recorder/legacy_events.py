"""TEMPORARY (remove once main's Ingest emits recorder.events): today's Observations as events.

Until the ingest hands its observers typed events, the health tests turn the observations
(and the sink's session updates, which say when an exchange or stream joined a session) into
the events in the order the new ingest emits them, running the correlator for call events.
Test-only; nothing in recorder/ imports it.
"""

from __future__ import annotations

from typing import Any

import orjson

from recorder.correlate import Correlator
from recorder.events import (
    ChunkSeen,
    Event,
    ExchangeEnded,
    MessageSeen,
    RequestSeen,
    ResponseSeen,
    SessionJoined,
    SessionLearned,
    SessionOpened,
    SseSeen,
    StreamClosed,
    StreamCounters,
    StreamOpened,
    Tick,
)
from recorder.jsonrpc import classify
from recorder.redact import session_param
from recorder.store.event_rows import parse_headers


class EventTap:
    """Both the tests' sink (wrap one with `sink()`) and the ingest's observer."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._correlator = Correlator()
        self._request: dict[str, Any] | None = None  # a RequestSeen that may learn its session
        self._join: dict[str, Any] | None = None
        self._bodies: dict[int, bytes] = {}

    def sink(self, inner: Any) -> Any:
        tap = self

        class _Sink:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
                tap._update(table, row_id, changes)
                inner.update(table, row_id, changes)

        return _Sink()

    def __call__(self, observation: Any) -> None:
        kind, t, row = observation.kind, observation.t, observation.row
        if kind == "call":
            return
        if kind == "session" and "key" in row and self._request is not None \
                and self._named_key(self._request) == row["key"]:
            self._emit(self._session_opened(row))
            self._request["session_id"] = row["id"]
            return
        self.flush()
        if kind == "session":
            if "key" in row:
                self._emit(self._session_opened(row))
            else:
                fields = SessionLearned._fields[2:]
                self._emit(SessionLearned(t, row["id"], *(row.get(f) for f in fields)))
        elif kind == "exchange":
            self._request = dict(row)
        elif kind == "response":
            self._emit(ResponseSeen(row["id"], t, row["status"], row.get("reason") or "",
                                    parse_headers(row.get("response_headers")),
                                    row.get("response_content_type"), bool(row.get("streamed")),
                                    bool(row.get("mcp")), row.get("session_id")))
        elif kind == "stream-open":
            self._emit(StreamOpened(row["id"], row["exchange_id"], row.get("session_id"),
                                    row["method"], row["role"], row.get("last_event_id_sent"),
                                    row["opened_at"], row.get("content_encoding")))
        elif kind == "chunk":
            self._emit(ChunkSeen(t, row["stream_id"], row.get("session_id"), row["seq"],
                                 row["size"]))
        elif kind == "sse":
            self._emit(SseSeen(row["id"], row["stream_id"], row.get("session_id"), t,
                               row["kind"], row.get("type"), row.get("data"),
                               row.get("event_id"), row.get("last_event_id"), row.get("retry"),
                               row.get("start") or 0, row.get("end") or 0))
        elif kind == "message":
            self._message(t, row)
        elif kind == "stream-close":
            counters = StreamCounters(t, row["id"], row["bytes"], row["chunks"], row["events"],
                                      row["comments"], row["max_gap_ms"], bool(row["truncated"]),
                                      row.get("retry_ms"), row.get("first_byte_at"))
            self._emit(StreamClosed(t, row["id"], row.get("session_id"), row["close_reason"],
                                    counters))
        elif kind == "exchange-end":
            self._emit(ExchangeEnded(row["id"], t, row.get("error"), bool(row.get("mcp")),
                                     row.get("session_id"), self._bodies.pop(row["id"], None)))
        elif kind == "tick":
            self._emit(Tick(t))

    def flush(self) -> None:
        if self._request is not None:
            row, self._request = self._request, None
            self._emit(RequestSeen(
                row["id"], row["flow_id"], row["method"], row["url"], row["path"],
                parse_headers(row["request_headers"]), row.get("request_body"),
                row.get("request_content_type"), row["started_at"], row["client_addr"],
                bool(row["mcp"]), row["request_size"], row.get("session_id")))
        if self._join is not None:
            join, self._join = self._join, None
            self._emit(SessionJoined(join["t"], join["session_id"], join["exchange_id"],
                                     join.get("stream_id"), join.get("role")))

    def _emit(self, event: Event) -> None:
        self.events.append(event)

    @staticmethod
    def _named_key(row: dict[str, Any]) -> str | None:
        for name, value in parse_headers(row["request_headers"]):
            if name.lower() == "mcp-session-id":
                return "sid:" + value
        legacy = session_param(row["url"])
        return "legacy:" + legacy if legacy else None

    @staticmethod
    def _session_opened(row: dict[str, Any]) -> SessionOpened:
        return SessionOpened(row["id"], row["key"], row["transport"], row.get("server") or "",
                             row.get("endpoint"), row["started_at"], row["ended_at"],
                             row.get("client_addr"), row.get("user_agent"))

    def _update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        if table == "exchanges" and "response_body" in changes:
            self._bodies[row_id] = changes["response_body"]
        if "session_id" not in changes and "role" not in changes:
            return
        if table == "exchanges":
            request = self._request
            if request is not None and request["id"] == row_id:
                request["session_id"] = changes["session_id"]
                return  # the request named its session: RequestSeen says so
            self.flush()
            t = self.events[-1].t if self.events else 0.0
            self._join = {"t": t, "session_id": changes["session_id"], "exchange_id": row_id}
        elif table == "streams" and self._join is not None:
            if "session_id" in changes:
                self._join["stream_id"] = row_id
            if "role" in changes:
                self._join["stream_id"] = row_id
                self._join["role"] = changes["role"]

    def _message(self, t: float, row: dict[str, Any]) -> None:
        text = row.get("json")
        payload = orjson.loads(text) if text and row["kind"] != "invalid" else None
        self._emit(MessageSeen(row["id"], row["session_id"], row.get("exchange_id"),
                               row.get("stream_id"), row.get("sse_event_id"), t,
                               row["direction"], row["kind"], row.get("rpc_id"),
                               row.get("method"), row.get("batch_index"), text,
                               row.get("problem"), row.get("call_id"), payload))
        if row["kind"] == "invalid" or payload is None:
            return
        message = classify(payload, row.get("batch_index"))
        correlation = self._correlator.observe(row["session_id"], row["direction"], message, t,
                                               row["id"], row.get("call_id") or 0)
        if correlation.event is not None:
            self._emit(correlation.event)
