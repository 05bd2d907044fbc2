"""What the mock serves: each recorded request with the script of its recorded answer (pure).

Design notes:
- A `Reply` is everything the recorded server sent because of one client request, with each
  item's delay after the request arrived: progress and log notifications, the server's own
  requests, heartbeat comments on that response stream, and the response itself. The mock
  plays it back with those delays (scaled, or none), so a client sees the same pacing.
- Streamable HTTP recordings give this directly: a POST's SSE body is that request's
  traffic. On the legacy transport everything shares one GET stream, so messages carry their
  call by correlation (responses, progress) or, for logs and server requests, go to the call
  most recently sent and still unanswered at that moment; the rest, and every heartbeat,
  belongs to the session stream (`stream_items`, delays counted from the stream's opening).
- Matching is by method and normalised params (`replay.matching`), never by id.
- Each recorded session is also kept whole as a `SessionProfile`: a client session on the mock
  is served from the recorded session whose `initialize` best matches the client's
  (`choose_profile`: protocol version first, then client name, then capabilities), so a
  2025-06-18 client never gets a 2025-11-25 handshake because that session came first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from recorder.model import C2S, NOTIFICATION, REQUEST, S2C, SSE
from replay.matching import Candidate, MatchIndex
from replay.recorded import RecordedMessage, RecordedSseItem, Recording

# Roles of scripted messages: they decide which ids the mock rewrites.
RESPONSE = "response"
PROGRESS = "progress"
SERVER_REQUEST = "server-request"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class ScriptItem:
    """One thing to write on a stream, `delay` seconds after its origin.

    kind "message": a JSON-RPC `payload` with its `role`; "comment": a heartbeat `text`;
    "event": any other SSE block, written as recorded (`event_type`, `data`, `event_id`,
    `retry`), such as a priming event.
    """

    delay: float
    kind: str
    payload: Any = None
    role: str = OTHER
    text: str | None = None
    event_type: str | None = None
    event_id: str | None = None
    retry: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """How the recorded server answered one request: `mode` "sse" or "json" (Streamable HTTP)."""

    method: str
    params: Any
    mode: str
    items: tuple[ScriptItem, ...]

    @property
    def answered(self) -> bool:
        return any(i.role == RESPONSE for i in self.items)


@dataclass(frozen=True, slots=True)
class SessionProfile:
    """One recorded session as the mock serves it: its handshake, its answers, its stream."""

    session_id: int
    protocol_version: str | None
    client_name: str | None
    capabilities: Any
    initialize: Reply | None
    index: MatchIndex[Reply]
    stream_items: tuple[ScriptItem, ...] = ()

    def describe(self) -> str:
        parts = [f"protocol {self.protocol_version or '?'}"]
        if self.client_name:
            parts.append(f"client {self.client_name}")
        return f"recorded session {self.session_id} ({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class ProfileChoice:
    """Which recorded session serves a client session, and why (for the log)."""

    profile: SessionProfile
    reason: str


_META = "io.modelcontextprotocol/"


def _initialize_facts(params: Any) -> tuple[str | None, str | None, Any]:
    """(protocol version, client name, capabilities) from `initialize` params, or from the
    `_meta` every 2026-07-28 request carries instead of a handshake."""
    if not isinstance(params, dict):
        return None, None, None
    found = params.get("_meta")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    info = params.get("clientInfo", meta.get(_META + "clientInfo"))
    name = info.get("name") if isinstance(info, dict) else None
    version = params.get("protocolVersion", meta.get(_META + "protocolVersion"))
    capabilities = params.get("capabilities", meta.get(_META + "clientCapabilities"))
    return (version if isinstance(version, str) else None,
            name if isinstance(name, str) else None, capabilities)


def _capability_score(recorded: Any, asked: Any) -> int:
    """Top-level capabilities both have, minus those only one has."""
    mine = set(recorded) if isinstance(recorded, dict) else set()
    theirs = set(asked) if isinstance(asked, dict) else set()
    return len(mine & theirs) - len(mine ^ theirs)


def choose_profile(profiles: Sequence[SessionProfile], params: Any, *,
                   sessionless: bool = False) -> ProfileChoice | None:
    """The recorded session that best matches a client's `initialize` params (or, with
    `sessionless`, the `_meta` of a 2026-07-28 request such as `server/discover`).

    Protocol version outweighs everything (a strict client leaves on a version it did not ask
    for), then the client's name, then how alike the capabilities are; ties go to the session
    recorded first. Only sessions that were initialized are candidates for `initialize`.
    """
    candidates = [p for p in profiles if sessionless or p.initialize is not None]
    if not candidates:
        return None
    version, name, capabilities = _initialize_facts(params)

    def score(profile: SessionProfile) -> tuple[int, int, int]:
        return (int(version is not None and profile.protocol_version == version),
                int(name is not None and profile.client_name == name),
                _capability_score(profile.capabilities, capabilities))

    best = max(candidates, key=score)  # max keeps the first of equals: recorded order
    same_version, same_name, _ = score(best)
    why = []
    why.append(f"same protocol version {version}" if same_version else
               f"no recorded session asked for {version or 'no version'}")
    if same_name:
        why.append(f"same client {name}")
    if len(candidates) == 1:
        why.append("the only session" if sessionless else "the only initialized session")
    return ProfileChoice(best, "; ".join(why))


@dataclass(frozen=True, slots=True)
class Catalog:
    """A capture made servable."""

    index: MatchIndex[Reply]
    initialize: Reply | None
    stream_items: tuple[ScriptItem, ...]
    streamable_path: str = "/mcp"
    sse_path: str = "/sse"
    messages_path: str = "/messages/"
    stateless: bool = False
    get_allowed: bool = True
    default_mode: str = "sse"
    separator: str = "\r\n"
    sessions: tuple[int, ...] = ()
    recorded_transport: str = "streamable-http"
    profiles: tuple[SessionProfile, ...] = ()

    @property
    def sessionless_choice(self) -> bool:
        """Sessionless traffic is served per request from the session it matches, when the
        recorded sessions differ in protocol version or client (else all answers pooled)."""
        return self.stateless and len({(p.protocol_version, p.client_name)
                                       for p in self.profiles}) > 1

    @property
    def requests(self) -> int:
        """Every recorded request the mock can answer, each session's initialize included."""
        initializes = sum(p.initialize is not None for p in self.profiles)
        return len(self.index.candidates) + (initializes or int(self.initialize is not None))


def _role(message: RecordedMessage) -> str:
    if message.kind == REQUEST:
        return SERVER_REQUEST
    if message.kind == NOTIFICATION:
        return PROGRESS if message.method == "notifications/progress" else OTHER
    return RESPONSE


def _item(delay: float, sse: RecordedSseItem | None, message: RecordedMessage | None) -> ScriptItem:
    delay = round(max(delay, 0.0), 6)
    event_id = sse.event_id if sse else None
    if message is not None:
        return ScriptItem(delay, "message", message.payload, _role(message), event_id=event_id)
    assert sse is not None
    if sse.kind == "comment":
        return ScriptItem(delay, "comment", text=sse.data or "")
    return ScriptItem(delay, "event", event_type=sse.type, text=sse.data, event_id=event_id,
                      retry=sse.retry)


class _Builder:
    def __init__(self, recording: Recording) -> None:
        self.rec = recording
        self.by_id = {m.id: m for m in recording.messages}
        self.by_event: dict[int, list[RecordedMessage]] = {}
        for m in recording.messages:
            if m.sse_event_id is not None:
                self.by_event.setdefault(m.sse_event_id, []).append(m)
        self.exchanges = {e.id: e for e in recording.exchanges}
        self.items_by_stream: dict[int, list[RecordedSseItem]] = {}
        for item in recording.sse_items:
            self.items_by_stream.setdefault(item.stream_id, []).append(item)
        self.stream_of_exchange = {s.exchange_id: s for s in recording.streams}
        self.legacy = recording.session.transport == SSE
        # Streams whose messages were not tied to one request by the transport: the legacy
        # stream carries everything; the standalone GET stream carries what the server sent
        # on its own, which may still be caused by a call in flight (a sampling request).
        self.shared_streams = {s.id for s in recording.streams
                               if s.role in ("legacy", "get")}
        self.responses = {m.call_id: m for m in recording.messages
                          if m.call_id is not None and m.direction == S2C
                          and m.kind in ("result", "error")}
        # Which client call each server message on a shared stream belongs to.
        self.owner: dict[int, int] = self._owners()
        self.owned: dict[int, list[RecordedMessage]] = {}
        for m in recording.messages:
            if m.id in self.owner:
                self.owned.setdefault(self.owner[m.id], []).append(m)

    def _owners(self) -> dict[int, int]:
        """Message id -> call id, for server messages on shared streams."""
        calls = [c for c in self.rec.calls if c.direction == C2S]
        client_calls = {c.id for c in calls}
        owners: dict[int, int] = {}
        for m in self.rec.messages:
            if m.direction != S2C or (not self.legacy and m.stream_id not in self.shared_streams):
                continue
            if m.call_id is not None and m.call_id in client_calls:
                owners[m.id] = m.call_id
                continue
            open_calls = [c for c in calls if c.sent_at <= m.t
                          and (c.answered_at is None or c.answered_at >= m.t)]
            if open_calls:
                owners[m.id] = max(open_calls, key=lambda c: (c.sent_at, c.id)).id
        return owners

    def _stream_items(self, stream_id: int, origin: float, *,
                      skip: frozenset[int] = frozenset()) -> list[ScriptItem]:
        out: list[ScriptItem] = []
        for sse in self.items_by_stream.get(stream_id, ()):
            if sse.kind not in ("event", "comment", "control"):
                continue
            messages = self.by_event.get(sse.id)
            if messages:
                out.extend(_item(sse.t - origin, sse, m) for m in messages if m.id not in skip)
            elif sse.kind == "event" and sse.type == "endpoint":
                continue  # the mock announces its own endpoint
            else:
                out.append(_item(sse.t - origin, sse, None))
        return out

    def reply(self, call_id: int, request: RecordedMessage) -> Reply:
        params = request.payload.get("params") if isinstance(request.payload, dict) else None
        exchange = self.exchanges.get(request.exchange_id or -1)
        if self.legacy:
            items = [_item(m.t - request.t, None, m) for m in self.owned.get(call_id, ())]
            return Reply(request.method or "", params, "sse", tuple(items))
        stream = self.stream_of_exchange.get(request.exchange_id or -1)
        response = self.responses.get(call_id)
        # What the server sent on the standalone stream because of this call.
        owned = [_item(m.t - request.t, None, m) for m in self.owned.get(call_id, ())
                 if m.stream_id in self.shared_streams]
        if stream is None:
            mode = "json" if exchange and "json" in (exchange.response_content_type or "") \
                else "sse"
            items = owned + ([_item(response.t - request.t, None, response)] if response else [])
        else:
            mode = "sse"
            items = owned + self._stream_items(stream.id, request.t)
            if response is not None and response.stream_id != stream.id:
                items.append(_item(response.t - request.t, None, response))  # a resumption
        items.sort(key=lambda i: i.delay)
        return Reply(request.method or "", params, mode, tuple(items))

    def session_stream(self) -> list[ScriptItem]:
        roles = ("legacy",) if self.legacy else ("get",)
        stream = next((s for s in self.rec.streams if s.role in roles), None)
        if stream is None:
            return []
        return self._stream_items(stream.id, stream.opened_at, skip=frozenset(self.owner))

    def get_allowed(self) -> bool:
        if self.legacy:
            return True
        gets = [e for e in self.rec.exchanges if e.method == "GET"]
        return not gets or any(e.status == 200 for e in gets)


def build_catalog(recordings: Sequence[Recording]) -> Catalog:
    """The mock's view of one or more recorded sessions (answers pooled, in recorded order)."""
    candidates: list[Candidate[Reply]] = []
    initialize: Reply | None = None
    stream_items: list[ScriptItem] = []
    paths: dict[str, str] = {}
    modes: list[str] = []
    stateless = bool(recordings) and all(r.session.stateless for r in recordings)
    get_allowed = True
    profiles: list[SessionProfile] = []
    for recording in recordings:
        builder = _Builder(recording)
        own: list[Candidate[Reply]] = []
        own_initialize: Reply | None = None
        init_params: Any = None
        first_params: Any = None  # a sessionless session's first request carries its facts
        for call in recording.calls:
            if call.direction != C2S or call.request_message_id not in builder.by_id:
                continue
            request = builder.by_id[call.request_message_id]
            if not isinstance(request.payload, dict):
                continue
            reply = builder.reply(call.id, request)
            modes.append(reply.mode)
            if call.method == "initialize":
                initialize = initialize or reply
                if own_initialize is None:
                    own_initialize, init_params = reply, reply.params
            else:
                if first_params is None:
                    first_params = reply.params
                candidates.append(Candidate(call.method, reply.params, reply))
                own.append(Candidate(call.method, reply.params, reply))
        own_stream = tuple(builder.session_stream())
        if not stream_items:
            stream_items = list(own_stream)
        version, client_name, capabilities = _initialize_facts(
            init_params if own_initialize is not None else first_params)
        profiles.append(SessionProfile(
            recording.session.id, version or recording.session.protocol_version, client_name,
            capabilities, own_initialize, MatchIndex(own), own_stream))
        endpoint = recording.session.endpoint or ""
        if builder.legacy:
            paths.setdefault("sse", endpoint or "/sse")
            for sse in recording.sse_items:
                if sse.type == "endpoint" and sse.data:
                    paths.setdefault("messages", urlsplit(sse.data.strip()).path or "/messages/")
        else:
            paths.setdefault("mcp", endpoint or "/mcp")
            get_allowed = get_allowed and builder.get_allowed()
    separator = recordings[0].line_separator if recordings else "\r\n"
    default_mode = max(set(modes), key=modes.count) if modes else "sse"
    routes = (paths.get("mcp", "/mcp"), paths.get("sse", "/sse"),
              paths.get("messages", "/messages/"))
    if len(set(routes)) != len(routes):
        # Legacy and Streamable endpoints recorded on one path would clash: use the defaults.
        routes = ("/mcp", "/sse", "/messages/")
    return Catalog(
        MatchIndex(candidates), initialize, tuple(stream_items), *routes,
        stateless, get_allowed, default_mode, separator,
        tuple(r.session.id for r in recordings),
        recordings[0].session.transport if recordings else "streamable-http",
        tuple(profiles),
    )
