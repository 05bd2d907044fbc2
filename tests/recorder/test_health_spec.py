"""The protocol lint, script-style: raw proxy facts -> the rule ids broken, one per rule.

Every rule of recorder.health.spec.rules has a case that breaks it (and only it) and the
clean scripts of tests/recorder/test_health.py break none. The clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from recorder.events import SessionLearned
from recorder.health import HealthMonitor
from recorder.health.spec.rules import BY_ID, RULES
from recorder.health.spec.schema import validate_message
from recorder.model import Flag
from tests.recorder.test_health import (
    ACCEPT,
    CFG,
    JSON_CT,
    MCP,
    SERVER,
    SSE_CT,
    Wire,
    err,
    event,
    note,
    ok,
    rpc,
)

META_2026 = {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                       "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
                       "io.modelcontextprotocol/clientCapabilities": {}}}
INIT_2025 = {"protocolVersion": "2025-06-18", "capabilities": {},
             "clientInfo": {"name": "c", "version": "1"}}


def lint(w: Wire) -> list[Flag]:
    flags = HealthMonitor(CFG, validate=validate_message).feed(w.events)
    return [f for f in flags if f.kind == "spec-violation"]


def rules(w: Wire) -> set[str]:
    return {f.details["rule"] for f in lint(w)}


def _session(w: Wire, version: str = "2025-06-18") -> list[tuple[str, str]]:
    headers = w.initialize(0.0)
    return [(k, v if k != "mcp-protocol-version" else version) for k, v in headers]


def _post_answer(w: Wire, flow: str, t: float, body: Any, answer: Any,
                 headers: list[tuple[str, str]], ctype: tuple[str, str] = SSE_CT) -> None:
    w.request(flow, t, "POST", MCP, headers, body)
    sid = [h for h in headers if h[0] == "mcp-session-id"]
    w.respond(flow, t + 0.01, 200, [ctype, *sid])
    w.chunk(flow, t + 0.02, event(answer) if ctype == SSE_CT else answer)
    w.end(flow, t + 0.02)


# --- One case per rule ------------------------------------------------------------------------


def case_jsonrpc_version(w: Wire) -> None:
    headers = _session(w)
    _post_answer(w, "p", 1.0, rpc(1, "tools/list"),
                 {"jsonrpc": "1.0", "id": 1, "result": {"tools": []}}, headers)


def case_id_type(w: Wire) -> None:
    headers = _session(w)
    _post_answer(w, "p", 1.0, rpc(1.5, "tools/list"), ok(1.5, tools=[]), headers)


def case_result_xor_error(w: Wire) -> None:
    headers = _session(w)
    _post_answer(w, "p", 1.0, rpc(1, "tools/list"),
                 {"jsonrpc": "2.0", "id": 1, "result": {"tools": []},
                  "error": {"code": -32603, "message": "both"}}, headers)


def case_error_shape(w: Wire) -> None:
    headers = _session(w)
    _post_answer(w, "p", 1.0, rpc(1, "tools/list"),
                 {"jsonrpc": "2.0", "id": 1, "error": {"code": "-32603", "message": 7}}, headers)


def case_batch(w: Wire) -> None:
    headers = _session(w)
    w.request("p", 1.0, "POST", MCP, headers, [note("notifications/initialized"),
                                              note("notifications/roots/list_changed")])
    w.respond("p", 1.01, 202, [JSON_CT])
    w.end("p", 1.01)


def case_negotiated_version(w: Wire) -> None:
    w.request("i", 0.0, "POST", MCP, [JSON_CT, ACCEPT], rpc(0, "initialize", **INIT_2025))
    w.respond("i", 0.01, 200, [SSE_CT, ("mcp-session-id", "s" * 32)])
    w.chunk("i", 0.02, event(ok(0, protocolVersion="1.0", capabilities={},
                                serverInfo={"name": "s", "version": "1"})))
    w.end("i", 0.02)


def case_post_accept(w: Wire) -> None:
    headers = [h for h in _session(w) if h[0] != "Accept"] + [("Accept", "application/json")]
    _post_answer(w, "p", 1.0, rpc(1, "tools/list"), ok(1, tools=[]), headers, ctype=JSON_CT)


def case_accepted_no_body(w: Wire) -> None:
    headers = _session(w)
    w.request("n", 1.0, "POST", MCP, headers, note("notifications/roots/list_changed"))
    w.respond("n", 1.01, 200, [JSON_CT, ("Content-Length", "2")])
    w.chunk("n", 1.02, b"{}")
    w.end("n", 1.02)


def case_response_content_type(w: Wire) -> None:
    headers = _session(w)
    _post_answer(w, "p", 1.0, rpc(1, "tools/list"), b'{"jsonrpc":"2.0","id":1,"result":{}}',
                 headers, ctype=("Content-Type", "text/plain"))


def case_protocol_version_header(w: Wire) -> None:
    headers = [h for h in _session(w) if h[0] != "mcp-protocol-version"]
    _post_answer(w, "p", 1.0, rpc(1, "tools/list"), ok(1, tools=[]), headers)


def case_session_id_echo(w: Wire) -> None:
    headers = _session(w)
    without = [h for h in headers if h[0] != "mcp-session-id"]
    w.request("p", 1.0, "POST", MCP, without, rpc(1, "tools/list"))
    w.respond("p", 1.01, 400, [JSON_CT])
    w.end("p", 1.01)


def case_session_required_400(w: Wire) -> None:
    _session(w)  # another client (its own user agent) posts without any session
    w.request("p", 1.0, "POST", MCP, [JSON_CT, ACCEPT, ("User-Agent", "other/1"),
                                      ("mcp-protocol-version", "2025-06-18")],
              rpc(1, "tools/list"))
    w.respond("p", 1.01, 200, [JSON_CT])
    w.chunk("p", 1.02, ok(1, tools=[]))
    w.end("p", 1.02)


def case_unknown_session_404(w: Wire) -> None:
    headers = _session(w)
    w.request("p", 1.0, "POST", MCP, headers, rpc(1, "tools/list"))
    w.respond("p", 1.01, 400, [JSON_CT])
    w.chunk("p", 1.02, {"jsonrpc": "2.0", "id": None,
                        "error": {"code": -32000, "message": "Bad Request: Session not found"}})
    w.end("p", 1.02)


def case_delete_session(w: Wire) -> None:
    headers = _session(w)
    w.request("d", 1.0, "DELETE", MCP, [h for h in headers if h[0] != "mcp-session-id"])
    w.respond("d", 1.01, 200, [])
    w.end("d", 1.01)


def _legacy(w: Wire, first: bytes) -> None:
    w.request("g", 0.0, "GET", SERVER + "/sse", [("Accept", "text/event-stream")])
    w.respond("g", 0.01, 200, [SSE_CT])
    w.chunk("g", 0.02, first)


def case_legacy_endpoint_first(w: Wire) -> None:
    _legacy(w, event(note("notifications/message", level="info", data="hi"), name="message"))


def case_legacy_message_event(w: Wire) -> None:
    _legacy(w, event(data="/messages/?session_id=" + "a" * 32, name="endpoint"))
    w.legacy_post("i", 0.1, "a" * 32, rpc(0, "initialize", protocolVersion="2024-11-05",
                                          capabilities={},
                                          clientInfo={"name": "c", "version": "1"}))
    w.chunk("g", 0.12, event(ok(0, protocolVersion="2024-11-05", capabilities={},
                                serverInfo={"name": "s", "version": "1"}), name="reply"))


def case_legacy_post_accepted(w: Wire) -> None:
    _legacy(w, event(data="/messages/?session_id=" + "a" * 32, name="endpoint"))
    w.legacy_post("i", 0.1, "a" * 32, rpc(0, "initialize", protocolVersion="2024-11-05",
                                          capabilities={},
                                          clientInfo={"name": "c", "version": "1"}), status=200)


def _post_2026(w: Wire, body: Any, answer: Any, headers: list[tuple[str, str]]) -> None:
    base = [JSON_CT, ACCEPT, ("mcp-protocol-version", "2026-07-28")]
    _post_answer(w, "p", 1.0, body, answer, base + headers, ctype=JSON_CT)


def case_method_header(w: Wire) -> None:
    _post_2026(w, rpc(1, "tools/call", name="add", arguments={}, **META_2026),
               ok(1, content=[], resultType="complete"),
               [("mcp-method", "tools/call"), ("mcp-name", "echo")])


def case_result_type(w: Wire) -> None:
    _post_2026(w, rpc(1, "tools/list", **META_2026), ok(1, tools=[], cacheScope="private", ttlMs=0),
               [("mcp-method", "tools/list")])


def case_error_code_2026(w: Wire) -> None:
    _post_2026(w, rpc(1, "resources/read", uri="demo://x", **META_2026),
               err(1, -32002, "not found"),
               [("mcp-method", "resources/read"), ("mcp-name", "demo://x")])


def case_schema(w: Wire) -> None:
    headers = _session(w)
    _post_answer(w, "p", 1.0, rpc(1, "tools/call", name="echo", arguments={}),
                 ok(1, content="not a list"), headers)


CASES: dict[str, Callable[[Wire], None]] = {
    name[len("case_"):].replace("_", "-").replace("error-code-2026", "error-code-2026"): fn
    for name, fn in dict(globals()).items() if name.startswith("case_")
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(BY_ID)


@pytest.mark.parametrize("rule", [r.id for r in RULES])
def test_each_case_breaks_its_rule_and_only_it(rule: str) -> None:
    w = Wire()
    CASES[rule](w)
    w.ticks(3.0)
    found = lint(w)
    assert {f.details["rule"] for f in found} == {rule}, [f.message for f in found]
    (flag,) = found
    assert flag.severity == "warning" and flag.message.startswith(f"[{rule}] ")
    assert BY_ID[rule].section in flag.message


def test_a_rule_broken_many_times_is_one_finding_per_session() -> None:
    w = Wire()
    headers = [h for h in _session(w) if h[0] != "mcp-protocol-version"]
    for i in range(5):
        _post_answer(w, f"p{i}", 1.0 + i, rpc(1 + i, "tools/list"), ok(1 + i, tools=[]),
                     headers)
    assert [f.details["rule"] for f in lint(w)] == ["protocol-version-header"]


def test_rules_bind_only_their_versions() -> None:
    # The same missing header under 2025-03-26 (no MCP-Protocol-Version yet) is fine.
    w = Wire()
    headers = [h for h in _session(w) if h[0] != "mcp-protocol-version"]
    w.events[:] = [e._replace(protocol_version="2025-03-26")
                   if isinstance(e, SessionLearned) and e.protocol_version else e
                   for e in w.events]
    _post_answer(w, "p", 1.0, rpc(1, "tools/list"), ok(1, tools=[]), headers)
    assert rules(w) == set()
    # A batch is allowed in 2025-03-26.
    w = Wire()
    headers = _session(w, "2025-03-26")
    w.request("p", 1.0, "POST", MCP, headers, [note("notifications/initialized"),
                                              note("notifications/roots/list_changed")])
    w.respond("p", 1.01, 202, [JSON_CT])
    w.end("p", 1.01)
    assert rules(w) == set()


def test_without_a_validator_the_schema_rule_is_off() -> None:
    w = Wire()
    case_schema(w)
    assert [f for f in HealthMonitor(CFG).feed(w.events)
            if f.kind == "spec-violation"] == []


def test_schema_validator_answers_for_known_methods_only() -> None:
    assert validate_message("c2s", "request", "tools/call", "2025-11-25",
                            {"name": "x", "arguments": {}}) is None
    assert validate_message("c2s", "request", "x-vendor/thing", "2025-11-25", {}) is None
    assert validate_message("c2s", "request", "tools/call", "1999-01-01", {}) is None
    problem = validate_message("s2c", "result", "tools/list", "2025-11-25", {"tools": "no"})
    assert problem is not None and problem.startswith("tools:")
    problem = validate_message("s2c", "result", "tools/list", "2026-07-28", {"tools": []})
    assert problem is not None and "resultType" in problem


def test_a_new_session_of_the_same_client_is_no_missing_session_id() -> None:
    # mcp 2's client probes with server/discover (no session id) before it initializes.
    w = Wire()
    _session(w)
    w.request("d", 1.0, "POST", MCP, [JSON_CT, ACCEPT, ("User-Agent", "client/1"),
                                      ("mcp-protocol-version", "2026-07-28"),
                                      ("mcp-method", "server/discover")],
              rpc(1, "server/discover", **META_2026))
    w.respond("d", 1.01, 400, [JSON_CT])
    w.end("d", 1.01)
    w.initialize(2.0, sid="t" * 32, flow="second")
    assert rules(w) == set()


def test_a_2026_client_over_legacy_sse_needs_no_mcp_method_header() -> None:
    # mcp 2's client over the legacy transport sends MCP-Protocol-Version, not Mcp-Method.
    w = Wire()
    sid = "a" * 32
    w.legacy_open("g", 0.0, sid)
    w.request("p", 0.1, "POST", f"{SERVER}/messages/?session_id={sid}",
              [JSON_CT, ("mcp-protocol-version", "2026-07-28")],
              rpc(1, "tools/list", **META_2026))
    w.respond("p", 0.11, 202, [("Content-Type", "text/plain")])
    w.end("p", 0.11)
    assert "method-header" not in rules(w)
