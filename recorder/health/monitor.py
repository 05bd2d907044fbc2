"""The detector facade: observations in time order in, flags out (`HealthMonitor`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from recorder.health.calls import CallChecks
from recorder.health.config import HealthConfig
from recorder.health.reconnects import ReconnectChecks
from recorder.health.registry import SPEC_VIOLATION
from recorder.health.security import SecurityChecks
from recorder.health.spec.lint import Finding, SpecLint, Validator
from recorder.health.state import ExchangeState, header_map, names_session
from recorder.ingest import Observation
from recorder.model import C2S, Flag
from recorder.redact import session_param


class HealthMonitor(CallChecks, ReconnectChecks, SecurityChecks):
    # CallChecks brings StreamChecks and SessionChecks: answers feed bursts and re-inits.
    """Feed it observations in time order (with ticks); it returns the flags each one raised."""

    def __init__(self, config: HealthConfig | None = None, *,
                 validate: Validator | None = None) -> None:
        """`validate` checks params and results against the schema (the shells pass
        recorder.health.spec.schema.validate_message; without it the schema rule is off)."""
        super().__init__(config)
        self._lint = SpecLint(validate)
        self._handlers = {
            "session": self._on_session, "exchange": self._on_exchange,
            "response": self._on_response, "stream-open": self._on_stream_open,
            "chunk": self._on_chunk, "sse": self._on_sse, "stream-close": self._on_stream_close,
            "exchange-end": self._on_exchange_end, "message": self._on_message,
        }

    def observe(self, observation: Observation) -> list[Flag]:
        if not isinstance(observation, Observation):  # TEMPORARY: a recorder.events value
            from recorder.legacy_observations import as_observations

            return [f for o in as_observations(observation) for f in self.observe(o)]
        self._out = []
        t = observation.t
        self.now = max(self.now, t)
        handler = self._handlers.get(observation.kind)
        if handler is not None:
            handler(t, observation.row)
            for finding in self._lint.observe(observation.kind, t, observation.row):
                self._spec_violation(finding)
        elif observation.kind == "tick":
            self._tick(self.now)
        return self._out

    def feed(self, observations: Iterable[Observation]) -> list[Flag]:
        """Every flag raised by a sequence of observations (tests, offline checks)."""
        out: list[Flag] = []
        for observation in observations:
            out += self.observe(observation)
        return out

    def finish(self, t: float) -> list[Flag]:
        """End of input: a last tick at `t`; what waited for more input is decided now."""
        flags = self.observe(Observation("tick", t, {}))
        self._out = []
        self._check_cancels(t, final=True)
        return flags + self._out

    def _spec_violation(self, finding: Finding) -> None:
        rule = finding.rule
        self._flag(
            SPEC_VIOLATION, ("spec", rule.id, finding.scope), finding.t,
            f"[{rule.id}] {finding.text} (MCP specification, {rule.section}: {rule.summary}). "
            "Usual cause: an implementation that deviates from the specification",
            session_id=finding.session_id, exchange_id=finding.exchange_id,
            stream_id=finding.stream_id, message_id=finding.message_id, rule=rule.id,
            section=rule.section, versions=list(rule.versions),
        )

    def _on_session(self, t: float, row: dict[str, Any]) -> None:
        session = self._session(row.get("id"))
        if session is None:
            return
        if row.get("key"):
            session.key = row["key"]
            self._session_keys[session.key] = session.id
        if row.get("transport"):
            session.transport = row["transport"]
        if row.get("client_addr") is not None or row.get("user_agent") is not None:
            host = str(row.get("client_addr") or "").rpartition(":")[0]
            session.client = (host, row.get("user_agent") or "")

    def _session_for_request(self, headers: dict[str, str], url: str) -> int | None:
        sid = headers.get("mcp-session-id")
        if sid:
            return self._session_keys.get("sid:" + sid)
        legacy = session_param(url)
        return self._session_keys.get("legacy:" + legacy) if legacy else None

    def _on_exchange(self, t: float, row: dict[str, Any]) -> None:
        url = str(row.get("url") or "")
        parts = urlsplit(url)
        headers = header_map(row.get("request_headers"))
        try:
            port = parts.port
        except ValueError:
            port = None
        scheme = parts.scheme or "http"
        host = (parts.hostname or "").lower()
        shown_port = port or (443 if scheme == "https" else 80)
        client_host = str(row.get("client_addr") or "").rpartition(":")[0]
        ex = ExchangeState(
            id=row["id"], method=str(row.get("method") or ""),
            path=str(row.get("path") or parts.path or "/"), url=url,
            server=f"{scheme}://{host}:{shown_port}", host=host, port=shown_port, scheme=scheme,
            client=(client_host, headers.get("user-agent", "")), started_at=t,
            headers=headers, mcp=bool(row.get("mcp")),
        )
        ex.session_id = self._session_for_request(headers, url)
        self._exchanges[ex.id] = ex
        session = self._sessions.get(ex.session_id or -1)
        if ex.method == "DELETE" and session is not None:
            session.ending = True
        self._check_retry_after(t, ex)
        if ex.method == "GET" and "text/event-stream" in headers.get("accept", ""):
            self._stream_attempt(t, ex)

    def _on_response(self, t: float, row: dict[str, Any]) -> None:
        ex = self._exchanges.get(row.get("id", -1))
        if ex is None:
            return
        status = row.get("status")
        ex.status = status if isinstance(status, int) else None
        if row.get("session_id") is not None:
            ex.session_id = row["session_id"]
        if row.get("mcp"):
            ex.mcp = True
        ctype = str(row.get("response_content_type") or "").split(";")[0].strip().lower()
        ex.sse = ctype == "text/event-stream"
        headers = header_map(row.get("response_headers"))
        session = self._session(ex.session_id)
        ok = ex.status is not None and 200 <= ex.status < 300
        if session is not None and ok and names_session(ex):
            session.ok += 1
            session.last_ok_at = t
            if ex.method == "DELETE":
                session.deleted = True
        if ex.status == 401:
            self._challenged.add(ex.server)
        if ex.status in (429, 503):
            self._rate_limited(t, ex, headers)
        if ex.status is not None and ex.status >= 400 and ex.method == "POST":
            for key in ex.calls:
                call = self._calls.get(key)
                if call is not None:
                    call.rejected = ex.status
        if ex.session_id is not None:
            self._check_url(t, ex)
        if ex.mcp:
            self._check_response_security(t, ex, headers, ok)
            if ex.sse and ok:
                self._check_stream_headers(t, ex, headers)

    def _on_exchange_end(self, t: float, row: dict[str, Any]) -> None:
        ex = self._exchanges.pop(row.get("id", -1), None)
        if ex is None:
            return
        if row.get("session_id") is not None:
            ex.session_id = row["session_id"]
        if row.get("mcp"):
            ex.mcp = True
        if ex.valid_rpc or ex.mcp:
            self._mcp_paths.add((ex.server, ex.path))
        expected_rpc = ex.valid_rpc or "mcp-session-id" in ex.headers \
            or "mcp-protocol-version" in ex.headers or (ex.server, ex.path) in self._mcp_paths
        answered_ok = ex.status is not None and 200 <= ex.status < 300
        for at, message in ex.invalid if expected_rpc else ():
            if message.get("direction") == C2S or answered_ok:  # error pages may be any JSON
                self._invalid(at, message, ex)
        self._check_session_not_found(t, ex, row)
        self._check_url(t, ex)  # if the response did not already (its session came late)
        error = row.get("error")
        if ex.stream_reason == "client-disconnect" or (
                error and "client disconnected" in str(error).lower()):
            self._closed_by_client(t, ex)
        if ex.status is None or error:
            # The carrying connection failed before (or while) answering.
            for key in ex.calls:
                call = self._calls.get(key)
                if call is not None and call.carrier_closed_at is None:
                    call.carrier_closed_at = t
                    call.carrier_close = f"the HTTP exchange failed: {error or 'no response'}"
        if ex.attempt_key is not None:
            self._attempt_ended(t, ex, error)

    def _on_message(self, t: float, row: dict[str, Any]) -> None:
        session_id = row.get("session_id")
        direction = str(row.get("direction") or C2S)
        kind = row.get("kind")
        ex = self._exchanges.get(row.get("exchange_id", -1))
        if ex is not None and session_id is not None and ex.session_id is None:
            ex.session_id = session_id
        stream = self._streams.get(row.get("stream_id", -1)) if row.get("stream_id") else None
        # Messages that are JSON-RPC but break its shape (wrong "jsonrpc", null id, bad
        # error) are the protocol lint's, one rule each; what is not JSON-RPC at all is ours.
        if kind == "invalid":
            if stream is not None:
                if self._speaks_mcp(stream, ex):
                    self._invalid(t, row, ex)
            elif ex is None:
                self._invalid(t, row, ex)
            else:
                ex.invalid.append((t, row))  # judged at the end, when its HTTP answer is known
            return
        if ex is not None:
            ex.valid_rpc = True
        if stream is not None:
            stream.valid_rpc = True
        session = self._session(session_id)
        if session is None:
            return
        if kind == "request":
            self._request(t, row, session, direction, ex, stream)
            if direction == C2S and row.get("method") == "initialize" and ex is not None:
                self._initialize_attempt(t, ex, session)
        elif kind == "notification":
            self._notification(t, row, session, direction, stream)
        elif kind in ("result", "error"):
            self._response(t, row, session, direction, ex, stream)

    def _tick(self, t: float) -> None:
        cfg = self.config
        if self._cancels:
            self._check_cancels(t, final=False)
        for stream in list(self._streams.values()):
            if stream.burst_started is not None and t - stream.burst_last > cfg.burst_window:
                self._end_burst(stream)
            last = stream.last_byte if stream.last_byte is not None else stream.opened_at
            self._check_heartbeat(stream, t, t - last)
        for call in list(self._calls.values()):
            if call.deadline > 0 and t - call.sent_at >= call.deadline:
                self._overdue(t, call)
        if self._truncations:
            due = [tr for tr in self._truncations if tr.due <= t]
            self._truncations = [tr for tr in self._truncations if tr.due > t]
            for tr in due:
                keys = [k for k in tr.calls if k in self._calls]
                session = self._sessions.get(tr.stream.session_id or -1)
                resumed_at = session.resumed.get(tr.stream.lane) if session is not None else None
                if resumed_at is not None and resumed_at >= tr.closed_at:
                    continue  # the client resumed that stream: its answer may still come there
                if keys:
                    self._truncated_early(tr.stream, keys, tr.closed_at, tr.reason)
        for key in [k for k, v in self._idle_suspects.items() if v.due < t]:
            del self._idle_suspects[key]
        for session_id, (at, client, exchange_id) in list(self._recoveries.items()):
            if t - at < cfg.session_recover_grace:
                continue
            del self._recoveries[session_id]
            if self._reinitialized.get(client, -1.0) >= at:
                continue
            session = self._sessions.get(session_id)
            if session is not None:
                self._never_recovered(t, session, client, exchange_id)
