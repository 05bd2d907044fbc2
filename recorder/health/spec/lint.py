"""The protocol lint: recorder events in, one finding per rule broken (per session or server) out.

Theory of operation:
- Sans-IO and rule-driven. Every check names a rule of `rules.RULES`; a rule applies only to
  the versions it lists. The version of a message is, in order: its exchange's
  `MCP-Protocol-Version` header, the version its session negotiated, the version an
  `initialize` offers, and 2024-11-05 for legacy HTTP+SSE sessions. When the version is
  unknown only the rules that bind every version run.
- Once per rule and scope. A rule broken a thousand times in a session is one finding (the
  first), in a session-less exchange once per server: the report stays readable.
- The SDKs are the reference for "normal". What the official SDKs do in a clean session must
  not be a finding; where one is, it is our bug or an SDK deviation, documented in the README.
- Schema validation is injected (`validate`, see `schema.validate_message`): this module stays
  a pure core with no pydantic import.
- An answer's request is the one recorder.correlate paired it with: a message's `call_id`
  names its call, and the request's method and version are kept under it until the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from recorder.events import (
    CallOpened,
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
    StreamOpened,
)
from recorder.health.registry import VERSIONS
from recorder.health.spec.rules import BY_ID, LintRule
from recorder.health.state import payload_of
from recorder.model import C2S, S2C

# (direction, kind, method, version, params or result) -> what is wrong, or None.
Validator = Callable[[str, str, str, str, Any], str | None]


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule broken, with where and the evidence in one line."""

    rule: LintRule
    t: float
    text: str
    scope: str  # "session/3" or "server/http://host:port"
    session_id: int | None = None
    exchange_id: int | None = None
    stream_id: int | None = None
    message_id: int | None = None


@dataclass(slots=True)
class _Exchange:
    id: int
    method: str
    url: str
    path: str
    server: str
    client: tuple[str, str]
    headers: dict[str, str]
    session_id: int | None = None
    c2s: list[tuple[str, str | None]] = field(default_factory=list)  # (kind, method) of the body
    legacy: bool = False
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    ctype: str = ""
    error_texts: list[str] = field(default_factory=list)  # JSON-RPC errors in the HTTP answer


@dataclass(slots=True)
class _Session:
    id: int
    transport: str = ""
    version: str | None = None
    offered: str | None = None


@dataclass(slots=True)
class _Stream:
    id: int
    exchange_id: int | None
    role: str
    first_event: bool = True


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class SpecLint:
    """Feed it the recorder's events in time order; it returns the rules they break.

    A facade that dispatches events itself (monitor.HealthMonitor) passes `report` and calls
    `handlers` directly: each finding then goes to `report` as it is made, and no list is
    made per event (most events break no rule).
    """

    def __init__(self, validate: Validator | None = None, *,
                 report: Callable[[Finding], None] | None = None) -> None:
        self.validate = validate
        self._report = report
        self._out: list[Finding] = []
        self._fired: set[tuple[str, str]] = set()
        self._exchanges: dict[int, _Exchange] = {}
        self._sessions: dict[int, _Session] = {}
        self._streams: dict[int, _Stream] = {}
        # Open requests by call id: (method, version), for the rules their answers follow.
        self._requests: dict[int, tuple[str, str | None]] = {}
        self._issuing: set[tuple[str, str]] = set()  # (server, path) that issued session ids
        self._issued_to: set[tuple[str, str, str, str]] = set()  # (client..., server, path)
        self._handlers: dict[type, Callable[[Any], None]] = {
            SessionOpened: self._on_session, SessionLearned: self._on_learned,
            SessionJoined: self._on_joined, RequestSeen: self._on_request,
            ResponseSeen: self._on_response, StreamOpened: self._on_stream_open,
            StreamClosed: self._on_stream_close, ExchangeEnded: self._on_exchange_end,
            SseSeen: self._on_sse, MessageSeen: self._on_message, CallOpened: self._on_call,
        }

    @property
    def handles(self) -> frozenset[type]:
        """The event types the lint reads."""
        return frozenset(self._handlers)

    @property
    def handlers(self) -> dict[type, Callable[[Any], None]]:
        """The lint's step for each event type it reads (with `report`, findings go there)."""
        return dict(self._handlers)

    def observe(self, event: Event) -> list[Finding]:
        handler = self._handlers.get(type(event))
        if handler is None:
            return []
        self._out = []
        handler(event)
        return self._out

    # Findings -------------------------------------------------------------------------------

    def _version_of(self, ex: _Exchange | None, session_id: int | None) -> str | None:
        if ex is not None and ex.headers.get("mcp-protocol-version"):
            return ex.headers["mcp-protocol-version"].strip()
        session = self._sessions.get(session_id if session_id is not None else -1)
        if session is not None:
            if session.version:
                return session.version
            if session.transport == "sse":
                return "2024-11-05"
            if session.offered:
                return session.offered
        return None

    def _applies(self, rule_id: str, version: str | None) -> bool:
        rule = BY_ID[rule_id]
        if version is None:
            return rule.versions == VERSIONS
        return version in rule.versions or version not in VERSIONS and rule.versions == VERSIONS

    def _find(self, rule_id: str, t: float, text: str, version: str | None, *,
              session_id: int | None = None, server: str = "", exchange_id: int | None = None,
              stream_id: int | None = None, message_id: int | None = None) -> None:
        if not self._applies(rule_id, version):
            return
        scope = f"session/{session_id}" if session_id is not None else f"server/{server}"
        if (rule_id, scope) in self._fired:
            return
        self._fired.add((rule_id, scope))
        finding = Finding(BY_ID[rule_id], t, text, scope, session_id, exchange_id, stream_id,
                          message_id)
        if self._report is not None:
            self._report(finding)
        else:
            self._out.append(finding)

    # Facts ----------------------------------------------------------------------------------

    def _on_session(self, e: SessionOpened) -> None:
        session = self._sessions.setdefault(e.id, _Session(e.id))
        session.transport = e.transport

    def _on_learned(self, e: SessionLearned) -> None:
        session = self._sessions.setdefault(e.session_id, _Session(e.session_id))
        if e.protocol_version is not None:
            session.version = e.protocol_version
        if e.requested_protocol_version is not None:
            session.offered = e.requested_protocol_version

    def _on_request(self, e: RequestSeen) -> None:
        parts = urlsplit(e.url)
        client_host = (e.client_addr or "").rpartition(":")[0]
        headers = e.headers()
        session = self._sessions.get(e.session_id) if e.session_id is not None else None
        self._exchanges[e.id] = _Exchange(
            id=e.id, method=e.method, url=e.url,
            path=parts.path or "/", server=f"{parts.scheme}://{parts.netloc}",
            client=(client_host, headers.get("user-agent", "")), headers=headers,
            # A request to a legacy message endpoint names its (HTTP+SSE) session in the URL.
            legacy=session is not None and session.transport == "sse"
            and "mcp-session-id" not in headers,
        )

    def _on_joined(self, e: SessionJoined) -> None:
        stream = self._streams.get(e.stream_id) if e.stream_id is not None else None
        if stream is not None and e.stream_role:
            stream.role = e.stream_role

    def _on_stream_open(self, e: StreamOpened) -> None:
        self._streams[e.id] = _Stream(e.id, e.exchange_id, e.role or "")

    def _on_stream_close(self, e: StreamClosed) -> None:
        self._streams.pop(e.stream_id, None)

    def _on_exchange_end(self, e: ExchangeEnded) -> None:
        ex = self._exchanges.pop(e.id, None)
        if ex is not None and ex.status is not None:
            # Judged at the end: live, a POST's own messages may be released after its answer.
            self._judge_http(e.t, ex)

    def _on_call(self, e: CallOpened) -> None:
        if e.replaced is not None:
            self._requests.pop(e.replaced, None)  # a reused id: the old request is over

    def _on_sse(self, e: SseSeen) -> None:
        stream = self._streams.get(e.stream_id)
        if stream is None or stream.role != "legacy" or e.kind != "event":
            return
        t = e.t
        kind = e.type or "message"
        data = e.data or ""
        session_id = e.session_id
        if stream.first_event:
            stream.first_event = False
            if kind != "endpoint" and '"jsonrpc"' in data:
                ex = self._exchanges.get(stream.exchange_id or -1)
                server = ex.server if ex is not None else ""
                self._find("legacy-endpoint-first", t,
                           f"the first event of GET {ex.path if ex else '?'} (stream #{stream.id}) "
                           f"is {kind!r}, not 'endpoint': a legacy client cannot learn where to "
                           "POST", "2024-11-05", session_id=session_id, server=server,
                           stream_id=stream.id, exchange_id=stream.exchange_id)
            return
        if kind not in ("message", "endpoint") and data.lstrip().startswith("{") \
                and '"jsonrpc"' in data:
            ex = self._exchanges.get(stream.exchange_id or -1)
            server = ex.server if ex is not None else ""
            self._find("legacy-message-event", t,
                       f"a JSON-RPC message on legacy stream #{stream.id} travels as "
                       f"'event: {kind}'; legacy clients read only 'message' events and drop it",
                       "2024-11-05", session_id=session_id, server=server, stream_id=stream.id)

    def _on_response(self, e: ResponseSeen) -> None:
        ex = self._exchanges.get(e.id)
        if ex is None:
            return
        if e.session_id is not None:
            ex.session_id = e.session_id
        ex.status = e.status
        ex.response_headers = e.headers()
        ex.ctype = (e.response_content_type or "").split(";")[0].strip().lower()

    def _judge_http(self, t: float, ex: _Exchange) -> None:
        """The HTTP rules of one exchange, once its request, messages and answer are known."""
        status, headers, ctype = ex.status, ex.response_headers, ex.ctype
        assert status is not None
        ok = 200 <= status < 300
        requests = [m for k, m in ex.c2s if k == "request"]
        version = self._version_of(ex, ex.session_id)
        if "mcp-session-id" in headers and "initialize" in requests:
            self._issuing.add((ex.server, ex.path))
            self._issued_to.add((*ex.client, ex.server, ex.path))
        where: dict[str, Any] = dict(session_id=ex.session_id, server=ex.server, exchange_id=ex.id)
        if ex.legacy:
            if ex.method == "POST" and ok and status != 202:
                self._find("legacy-post-accepted", t,
                           f"POST {ex.path} to the legacy message endpoint was answered {status}, "
                           "not 202 Accepted", "2024-11-05", **where)
            return
        texts = " ".join(ex.error_texts).lower()
        if status == 400 and "mcp-session-id" in ex.headers and "session" in texts \
                and ("not found" in texts or "unknown" in texts or "expired" in texts
                     or "invalid" in texts or "no valid" in texts):
            self._find("unknown-session-404", t,
                       f"{ex.method} {ex.path} named a session the server does not know and was "
                       f"answered 400 ({' '.join(ex.error_texts)[:80]!r}); the answer must be "
                       "404, or clients never re-initialize", version, **where)
        if ex.method == "DELETE":
            if "mcp-session-id" not in ex.headers and (ex.server, ex.path) in self._issuing:
                self._find("delete-session", t,
                           f"DELETE {ex.path} carries no Mcp-Session-Id, so it names no session "
                           "to end", version, **where)
            return
        if ex.method != "POST" or not ex.c2s:
            return
        accept = ex.headers.get("accept", "").lower()
        if "application/json" not in accept or "text/event-stream" not in accept:
            shown = ex.headers.get("accept") or "(none)"
            self._find("post-accept", t,
                       f"POST {ex.path} sent Accept: {shown}; a Streamable HTTP client must "
                       "accept both application/json and text/event-stream", version,
                       **where)
        if not requests and ok:
            length = headers.get("content-length", "").strip()
            if status != 202 or (length and length != "0") or ctype == "text/event-stream":
                what = f"{status}" + (f" with a {ctype} body" if ctype and length != "0" else "")
                self._find("accepted-no-body", t,
                           f"POST {ex.path} of only notifications or responses was answered "
                           f"{what}; the answer must be 202 Accepted with no body", version,
                           **where)
        if requests and status == 200 and ctype not in ("application/json", "text/event-stream"):
            self._find("response-content-type", t,
                       f"POST {ex.path} with {requests[0]} was answered 200 with Content-Type "
                       f"{ctype or '(none)'}; it must be application/json or text/event-stream",
                       version, **where)
        named = "mcp-session-id" in ex.headers
        if named and "initialize" not in requests and not ex.headers.get("mcp-protocol-version"):
            self._find("protocol-version-header", t,
                       f"POST {ex.path} with {requests[0] if requests else 'a notification'} "
                       f"carries no MCP-Protocol-Version header though session #{ex.session_id} "
                       f"negotiated {version}", version, **where)
        # A new session begins without one: `initialize`, or a 2026 client's `server/discover`
        # probe for the version (mcp 2 against an older server).
        opening = any(m in ("initialize", "server/discover") for m in requests)
        if not named and not opening and (ex.server, ex.path) in self._issuing:
            if (*ex.client, ex.server, ex.path) in self._issued_to:
                self._find("session-id-echo", t,
                           f"POST {ex.path} ({(requests or ['a notification'])[0]}) carries no "
                           f"Mcp-Session-Id though {ex.server} issued one to this client",
                           version, **where)
            if ok:
                self._find("session-required-400", t,
                           f"{ex.server} answered {status} to POST {ex.path} without a session "
                           "id, though it issues sessions; it must answer 400 Bad Request",
                           version, **where)

    def _on_message(self, e: MessageSeen) -> None:
        if e.kind == "invalid":
            return  # not a JSON-RPC message at all: invalid-message says so
        payload = payload_of(e)
        if not isinstance(payload, dict):
            return
        t = e.t
        direction = e.direction or C2S
        session_id = e.session_id
        exchange_id = e.exchange_id if e.exchange_id is not None else -1
        ex = self._exchanges.get(exchange_id) if direction == C2S else None
        if direction == S2C and e.stream_id is None and isinstance(
                payload.get("error"), dict) and isinstance(payload["error"].get("message"), str):
            answered = self._exchanges.get(exchange_id)
            if answered is not None:
                answered.error_texts.append(payload["error"]["message"])
        if ex is not None and ex.session_id is None:
            ex.session_id = session_id
        method = payload.get("method")
        if not isinstance(method, str):
            method = None
        kind = e.kind
        if direction == C2S and ex is not None and e.stream_id is None:
            ex.c2s.append((kind, method))
        # The version: initialize offers one; answers follow their request's.
        params = payload.get("params")
        asked: tuple[str, str | None] | None = None
        if method is None and e.call_id is not None:
            asked = self._requests.pop(e.call_id, None)
        version = self._version_of(ex, session_id)
        if asked is not None and asked[1]:
            version = asked[1]
        if method == "initialize" and isinstance(params, dict) \
                and isinstance(params.get("protocolVersion"), str):
            version = version or params["protocolVersion"]
        if method is not None and "id" in payload and e.call_id is not None:
            self._requests[e.call_id] = (method, version)
        # Where a finding points and how it names the message (`_where`, `_label`) are built
        # only for a finding: most messages break no rule.
        self._shape(t, payload, e, ex, method, asked, version)
        if method is None:
            self._answer(t, payload, e, ex, asked, version, direction)
        elif kind in ("request", "notification"):
            if ex is not None and kind == "request" and e.batch_index is None:
                self._headers_2026(t, e, ex, method, params, version)
            if self.validate is not None and version is not None:
                problem = self.validate(direction, kind, method, version, params)
                if problem:
                    self._find("schema", t, f"{direction} {kind} {method} does not match the "
                               f"{version} schema: {problem}", version,
                               **self._where(e, ex))

    @staticmethod
    def _where(e: MessageSeen, ex: _Exchange | None) -> dict[str, Any]:
        """The ids a message's finding carries (`_find`'s keywords)."""
        return dict(session_id=e.session_id, server=ex.server if ex else "",
                    exchange_id=e.exchange_id, stream_id=e.stream_id, message_id=e.id)

    @staticmethod
    def _label(e: MessageSeen, method: str | None,
               asked: tuple[str, str | None] | None) -> str:
        """How a finding names the message: its method, or the request it answers."""
        return method or f"the response to {asked[0] if asked else 'id ' + str(e.rpc_id)}"

    def _shape(self, t: float, payload: dict[str, Any], e: MessageSeen, ex: _Exchange | None,
               method: str | None, asked: tuple[str, str | None] | None,
               version: str | None) -> None:
        if payload.get("jsonrpc") != "2.0":
            shown = orjson.dumps(payload["jsonrpc"]).decode() if "jsonrpc" in payload \
                else "missing"
            self._find("jsonrpc-version", t,
                       f"{self._label(e, method, asked)} has \"jsonrpc\": {shown}, not \"2.0\"",
                       version, **self._where(e, ex))
        if method is not None and "id" in payload and not _is_id(payload["id"]):
            self._find("id-type", t, f"request {method} has id "
                       f"{orjson.dumps(payload['id']).decode()}; ids are strings or integers",
                       version, **self._where(e, ex))
        if method is None and ("result" in payload) == ("error" in payload):
            has = "both result and error" if "result" in payload else "neither result nor error"
            self._find("result-xor-error", t, f"{self._label(e, method, asked)} has {has}",
                       version, **self._where(e, ex))
        if method is None and "error" in payload:
            error = payload["error"]
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            if not _is_id(code) or isinstance(code, str) or not isinstance(text, str):
                self._find("error-shape", t, f"{self._label(e, method, asked)} carries error "
                           f"{orjson.dumps(error).decode()[:120]}; code must be an integer and "
                           "message a string", version, **self._where(e, ex))
        if e.batch_index is not None and version is not None \
                and version != "2025-03-26":
            self._find("batch", t, f"{self._label(e, method, asked)} travelled in a JSON-RPC "
                       f"batch, which {version} does not allow (batches exist only in "
                       "2025-03-26)", version, **self._where(e, ex))

    def _answer(self, t: float, payload: dict[str, Any], e: MessageSeen, ex: _Exchange | None,
                asked: tuple[str, str | None] | None, version: str | None,
                direction: str) -> None:
        result = payload.get("result")
        if isinstance(result, dict) and asked is not None:
            if asked[0] == "initialize":
                answered = result.get("protocolVersion")
                if isinstance(answered, str) and answered not in VERSIONS:  # (missing: schema)
                    self._find("negotiated-version", t, f"initialize was answered with "
                               f"protocolVersion {answered!r}, not a published revision",
                               asked[1] or "2025-06-18", **self._where(e, ex))
            checked = result
            if "resultType" not in result:
                self._find("result-type", t, f"{self._label(e, None, asked)} has no resultType",
                           version, **self._where(e, ex))
                checked = {"resultType": "complete", **result}  # said once, by its own rule
            if self.validate is not None and version is not None:
                problem = self.validate(direction, "result", asked[0], version, checked)
                if problem:
                    self._find("schema", t, f"the result of {asked[0]} does not match the "
                               f"{version} schema: {problem}", version, **self._where(e, ex))
        error = payload.get("error")
        if isinstance(error, dict) and error.get("code") == -32002:
            self._find("error-code-2026", t, f"{self._label(e, None, asked)} uses -32002 "
                       "(resource not found before 2026-07-28); 2026-07-28 uses -32602",
                       version, **self._where(e, ex))

    def _headers_2026(self, t: float, e: MessageSeen, ex: _Exchange, method: str, params: Any,
                      version: str | None) -> None:
        if version not in BY_ID["method-header"].versions or ex.legacy:
            return  # the headers are Streamable HTTP's; mcp 2 over legacy SSE sends none
        sent = ex.headers.get("mcp-method")
        problems = []
        if sent != method:
            problems.append(f"Mcp-Method {sent!r} for method {method!r}")
        name = None
        if isinstance(params, dict):
            value = params.get("uri") if method.startswith("resources/") else params.get("name")
            name = value if isinstance(value, str) else None
        if name is not None and ex.headers.get("mcp-name") != name:
            problems.append(f"Mcp-Name {ex.headers.get('mcp-name')!r} for {name!r}")
        if problems:
            self._find("method-header", t, f"POST {ex.path}: " + ", ".join(problems) +
                       "; servers answer a mismatch with 400 -32020 HeaderMismatch", version,
                       **self._where(e, ex))
