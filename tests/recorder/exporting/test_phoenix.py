"""A real OpenTelemetry backend (Arize Phoenix, from PyPI) receives ssetap's spans.

Live from a recording, from two recorders at once, and from an `otlp` export replayed into it.
Phoenix is started on loopback by these tests (see phoenix.py); they skip, loudly, only when
SSETAP_PHOENIX_PYTHON is unset (`.ci/phoenix.sh` builds the venv and prints the path).
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from recorder import otel
from recorder.cli import main as ssetap
from recorder.store import Capture
from tests.recorder.exporting.conftest import record_session_output
from tests.recorder.exporting.phoenix import ENV_VAR, Phoenix
from tests.sdk_peers import FIRST_METHOD


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    python = os.environ.get(ENV_VAR)
    if not python:
        pytest.skip(f"SKIPPED LOUDLY: {ENV_VAR} is unset, so no Phoenix backend to push to; "
                    "run `export SSETAP_PHOENIX_PYTHON=$(bash .ci/phoenix.sh)`")
    server = Phoenix(python, tmp_path_factory.mktemp("phoenix"))
    yield server
    server.stop()


def session_of(db: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with Capture(db) as capture:
        (session,) = capture.sessions()
        return session, capture.calls(session["id"])


def trace_of(session: dict[str, Any]) -> str:
    return otel.session_trace_id(otel.SessionFacts.from_row(session))


def check_session_in_backend(spans: list[dict[str, Any]], db: Path) -> None:
    """The capture's session, streams and calls are in the backend, with their parentage."""
    session, calls = session_of(db)
    trace = trace_of(session)
    mine = [s for s in spans if s["context"]["trace_id"] == trace]
    roots = [s for s in mine if s["name"] == "mcp.session"]
    assert len(roots) == 1, sorted(s["name"] for s in mine)
    root = roots[0]
    assert root["parent_id"] is None
    call_spans = [s for s in mine if not s["name"].startswith("mcp.")]
    assert len(call_spans) == len(calls)
    assert all(s["parent_id"] == root["context"]["span_id"] for s in mine if s is not root)
    names = {s["name"] for s in call_spans}
    assert {FIRST_METHOD, "tools/list", "tools/call echo", "tools/call slow",
            "tools/call fail", "resources/read"} <= names, names
    echo = next(s for s in call_spans if s["name"] == "tools/call echo")
    flat = flatten(echo["attributes"])
    assert flat["mcp.method.name"] == "tools/call"
    assert flat["gen_ai.tool.name"] == "echo" and flat["gen_ai.operation.name"] == "execute_tool"
    prefix, _, session_id = session["key"].partition(":")
    assert flat.get("mcp.session.id") == (session_id if prefix in ("sid", "legacy") else None)
    assert flat["server.address"] == "127.0.0.1"
    fail = next(s for s in call_spans if s["name"] == "tools/call fail")
    assert fail["status_code"] == "ERROR" and flatten(fail["attributes"])["error.type"] == \
        "tool_error"
    assert all(s["status_code"] != "ERROR" for s in call_spans
               if "error.type" not in flatten(s["attributes"]))


def flatten(attributes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Phoenix may nest dotted attribute names; compare them flat."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def has_session(db: Path):
    session, calls = session_of(db)
    trace = trace_of(session)

    def ready(spans: list[dict[str, Any]]) -> bool:
        mine = [s for s in spans if s["context"]["trace_id"] == trace]
        return len([s for s in mine if not s["name"].startswith("mcp.")]) >= len(calls) and \
            any(s["name"] == "mcp.session" for s in mine)

    return ready


def test_live_recording_arrives_in_phoenix(phoenix, tmp_path):
    db, output = record_session_output(tmp_path / "live.db", "streamable-sse",
                                       "--otlp-endpoint", phoenix.url)
    assert ", 0 dropped, 0 failed" in output, output
    spans = phoenix.wait_for_spans(has_session(db))
    check_session_in_backend(spans, db)


def test_two_recorders_push_into_one_backend(phoenix, tmp_path):
    results: dict[str, Path] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            results[name] = record_session_output(tmp_path / f"{name}.db", name,
                                                  "--otlp-endpoint", phoenix.url)[0]
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,))
               for name in ("legacy-sse", "streamable-json")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    dbs = list(results.values())
    spans = phoenix.wait_for_spans(lambda s: all(has_session(db)(s) for db in dbs))
    for db in dbs:
        check_session_in_backend(spans, db)
    traces = {trace_of(session_of(db)[0]) for db in dbs}
    assert len(traces) == 2  # each recorder's session is its own trace


def otlp_json_to_protobuf(line: bytes) -> bytes:
    """An OTLP/JSON line (hex ids) as the protobuf body a backend takes (base64 ids)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    data = orjson.loads(line)
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return bytes(json_format.ParseDict(data, ExportTraceServiceRequest()).SerializeToString())


def test_otlp_export_replayed_into_phoenix(phoenix, recorded, tmp_path):
    db = recorded("legacy-sse")
    out = tmp_path / "traces.jsonl"
    assert ssetap(["export", str(db), "--format", "otlp", "-o", str(out)]) == 0
    for line in out.read_bytes().splitlines():
        if b'"resourceSpans"' not in line:
            continue  # the metrics line: Phoenix takes traces only
        response = httpx.post(f"{phoenix.url}/v1/traces", content=otlp_json_to_protobuf(line),
                              headers={"Content-Type": "application/x-protobuf"},
                              timeout=30, trust_env=False)
        assert response.status_code == 200, response.text
    spans = phoenix.wait_for_spans(has_session(db))
    check_session_in_backend(spans, db)
    heartbeats = [e for s in spans if s["context"]["trace_id"] == trace_of(session_of(db)[0])
                  for e in s["events"] if e["name"] == "sse.heartbeat"]
    assert len(heartbeats) >= 2
