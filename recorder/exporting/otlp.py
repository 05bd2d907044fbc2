"""`ssetap export --format otlp`: OTLP/JSON lines, the OpenTelemetry file exporter's format.

Per session, lines of `ExportTraceServiceRequest` (`{"resourceSpans": [...]}`, at most
`SPANS_PER_LINE` spans a line) with the session's span, its streams' spans and its calls' spans (recorder.otel says what they hold),
then one `ExportMetricsServiceRequest` line (`{"resourceMetrics": [...]}`) with the
`mcp.client.operation.duration` histogram of every answered call. Ids are hex, times are
nanoseconds since the epoch in strings, as the OTLP JSON mapping says.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson

from recorder import otel
from recorder.exporting import ExportOptions
from recorder.exporting.redaction import RowRedaction
from recorder.store import Capture
from recorder.store_archive import (
    capture_gaps,
    messages_by_id,
    session_calls,
    stream_items,
    table_count,
    table_rows,
)

SCOPE = {"name": "ssetap", "version": "1"}
# A session's spans are split over lines of at most this many (a line is held in memory).
SPANS_PER_LINE = 1000


def nanos(t: float) -> str:
    return str(round(t * 1_000_000_000))


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def attributes(items: otel.Attributes) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value(v)} for k, v in items]


def span_json(span: otel.Span) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id, "spanId": span.span_id, "name": span.name,
        "kind": span.kind, "startTimeUnixNano": nanos(span.start),
        "endTimeUnixNano": nanos(span.end), "attributes": attributes(span.attributes),
        "events": [{"timeUnixNano": nanos(e.t), "name": e.name,
                    "attributes": attributes(e.attributes)} for e in span.events],
        "status": {"code": span.status_code, **({"message": span.status_message}
                                                if span.status_message else {})},
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    return out


def resource(extra: otel.Attributes = ()) -> dict[str, Any]:
    return {"attributes": attributes((("service.name", "ssetap"), *extra))}


def traces_request(spans: list[otel.Span], extra: otel.Attributes = ()) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": resource(extra), "scopeSpans": [
        {"scope": SCOPE, "spans": [span_json(s) for s in spans]}]}]}


def metrics_request(histogram: otel.DurationHistogram,
                    extra: otel.Attributes = ()) -> dict[str, Any]:
    points = []
    for (method, err), values in sorted(histogram.points.items(),
                                        key=lambda item: (item[0][0], item[0][1] or "")):
        labels: otel.Attributes = (("mcp.method.name", method),) + (
            (("error.type", err),) if err else ())
        points.append({
            "attributes": attributes(labels),
            "startTimeUnixNano": nanos(histogram.start or 0.0),
            "timeUnixNano": nanos(histogram.end or 0.0), "count": str(len(values)),
            "sum": sum(values), "min": min(values), "max": max(values),
            "bucketCounts": [str(c) for c in histogram.buckets(values)],
            "explicitBounds": list(otel.DURATION_BOUNDS)})
    return {"resourceMetrics": [{"resource": resource(extra), "scopeMetrics": [
        {"scope": SCOPE, "metrics": [{
            "name": otel.DURATION_METRIC, "unit": "s",
            "description": "Duration of MCP requests as seen between client and server",
            "histogram": {"aggregationTemporality": 2, "dataPoints": points}}]}]}]}


def call_facts(row: dict[str, Any], messages: dict[int, dict[str, Any]]) -> otel.CallFacts:
    def payload(message_id: int | None) -> Any:
        message = messages.get(message_id) if message_id is not None else None
        if not message or not message["json"]:
            return None
        try:
            return orjson.loads(message["json"])
        except orjson.JSONDecodeError:
            return None

    return otel.CallFacts(
        call_id=row["id"], direction=row["direction"], rpc_id=row["rpc_id"],
        method=row["method"], sent_at=row["sent_at"], answered_at=row["answered_at"],
        outcome=row["outcome"], request=payload(row["request_message_id"]),
        response=payload(row["response_message_id"]), error_code=row["error_code"],
        error_message=row["error_message"], cancelled_at=row["cancelled_at"],
        progress_count=row["progress_count"] or 0)


def stream_facts(capture: Capture, row: dict[str, Any]) -> otel.StreamFacts:
    beats = tuple(i["t"] for i in stream_items(capture, row["id"], ("comment",),
                                               limit=otel.MAX_HEARTBEAT_EVENTS))
    return otel.StreamFacts(
        id=row["id"], role=row["role"], method=row["method"], opened_at=row["opened_at"],
        closed_at=row["closed_at"], close_reason=row["close_reason"], events=row["events"],
        comments=row["comments"], bytes=row["bytes"], max_gap_ms=row["max_gap_ms"],
        heartbeats=beats)


def session_spans(capture: Capture, session_row: dict[str, Any],
                  histogram: otel.DurationHistogram,
                  redaction: RowRedaction | None = None) -> Iterator[otel.Span]:
    """Every span of one stored session, streamed; answered calls also go into `histogram`."""
    session = otel.SessionFacts.from_row(session_row)
    findings = [otel.flag_finding(f) for f in capture.flags(session.id)]
    findings += [otel.gap_finding(g) for g in capture_gaps(capture, session.id)]
    yield otel.session_span(session, [f for f in findings if f.stream_id is None])
    for stream in capture.streams(session.id):
        yield otel.stream_span(stream_facts(capture, stream), session,
                               [f for f in findings if f.stream_id == stream["id"]],
                               end=session.ended_at)
    for rows in _pages(session_calls(capture, session.id), 500):
        ids = [i for c in rows for i in (c["request_message_id"], c["response_message_id"]) if i]
        messages = messages_by_id(capture, ids)
        if redaction:
            messages = {k: redaction.row("messages", m) for k, m in messages.items()}
        for row in rows:
            call = call_facts(row, messages)
            seconds = otel.duration_of(call)
            if seconds is not None and call.answered_at is not None:
                histogram.add(call.method, otel.error_type(call)[0], seconds, call.answered_at)
            yield otel.call_span(call, session, session_end=session.ended_at)


def _pages(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    page: list[Any] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def export(capture: Capture, out: IO[bytes], options: ExportOptions) -> int:
    """Write the OTLP/JSON lines; returns the number of spans."""
    redaction = RowRedaction(options.redactor) if options.redactor else None
    histogram = otel.DurationHistogram()
    total = table_count(capture, "sessions", options.session_id)
    count = 0
    for number, row in enumerate(table_rows(capture, "sessions", options.session_id), 1):
        if redaction:
            row = redaction.row("sessions", row)
        session = {**(capture.session(row["id"]) or row), "key": row["key"]}
        for spans in _pages(session_spans(capture, session, histogram, redaction),
                            SPANS_PER_LINE):
            out.write(orjson.dumps(traces_request(spans)) + b"\n")
            count += len(spans)
        if options.progress:
            options.progress(number, total)
    if histogram.points:
        out.write(orjson.dumps(metrics_request(histogram)) + b"\n")
    return count
