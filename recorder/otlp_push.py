"""Live OTLP/HTTP push (protobuf) of a recording's spans, from the worker process.

Design notes:
- Never blocks recording: spans are put on a bounded queue without waiting; when it is full the
  span is dropped and counted. A sender thread takes batches (up to `batch_size` spans or
  `batch_seconds`), encodes them with the OpenTelemetry project's own protobuf classes
  (`opentelemetry-proto`) and POSTs them to `{endpoint}/v1/traces`.
- A failed POST (connection refused, 5xx, 429, timeout) is retried with exponential backoff
  (`retries` times); a batch that still fails is counted as failed, and the sender goes on
  with the next one. A 4xx other than 429 is not retried: the backend refused the data.
- `close()` sends what is queued, within a deadline; the counts (sent, dropped, failed) are
  what `ssetap record` prints and stores in the capture's meta (`otlp_push`).
- Runs in the worker (recorder.worker), never in the proxy's process or event loop.
"""

from __future__ import annotations

import os
import platform
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from recorder import otel

META_KEY = "otlp_push"


@dataclass(frozen=True, slots=True)
class PushOptions:
    """Where and how to push; parsed from `ssetap record --otlp-endpoint/--otlp-header`."""

    endpoint: str
    headers: tuple[tuple[str, str], ...] = ()
    queue_size: int = 10_000
    batch_size: int = 512
    batch_seconds: float = 1.0
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 10.0
    resource: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> PushOptions:
        data = orjson.loads(text)
        for key in ("headers", "resource"):
            data[key] = tuple(tuple(pair) for pair in data.get(key, ()))
        return cls(**data)

    @property
    def traces_url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"


@dataclass(frozen=True, slots=True)
class PushCounts:
    sent: int
    dropped: int
    failed: int
    batches: int
    last_error: str | None

    def summary(self, endpoint: str) -> str:
        text = (f"otlp push to {endpoint}: {self.sent} spans sent, {self.dropped} dropped, "
                f"{self.failed} failed")
        return text + (f" (last error: {self.last_error})" if self.last_error else "")


def _any_value(pb: Any, value: Any) -> None:
    if isinstance(value, bool):
        pb.bool_value = value
    elif isinstance(value, int):
        pb.int_value = value
    elif isinstance(value, float):
        pb.double_value = value
    else:
        pb.string_value = str(value)


def _attributes(target: Any, items: otel.Attributes) -> None:
    for key, value in items:
        kv = target.add()
        kv.key = key
        _any_value(kv.value, value)


def encode(spans: list[otel.Span], resource: otel.Attributes) -> bytes:
    """An ExportTraceServiceRequest in protobuf, with one resource and one scope."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _attributes(resource_spans.resource.attributes, resource)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "ssetap"
    scope_spans.scope.version = "1"
    for span in spans:
        pb = scope_spans.spans.add()
        pb.trace_id = bytes.fromhex(span.trace_id)
        pb.span_id = bytes.fromhex(span.span_id)
        if span.parent_span_id:
            pb.parent_span_id = bytes.fromhex(span.parent_span_id)
        pb.name = span.name
        pb.kind = span.kind
        pb.start_time_unix_nano = round(span.start * 1e9)
        pb.end_time_unix_nano = round(span.end * 1e9)
        _attributes(pb.attributes, span.attributes)
        for event in span.events:
            pe = pb.events.add()
            pe.name = event.name
            pe.time_unix_nano = round(event.t * 1e9)
            _attributes(pe.attributes, event.attributes)
        pb.status.code = span.status_code
        if span.status_message:
            pb.status.message = span.status_message
    return bytes(request.SerializeToString())


def default_resource(extra: Mapping[str, str] | None = None) -> otel.Attributes:
    """service.name plus who pushed: one recorder of a fleet tells itself apart this way."""
    return (("service.name", "ssetap"),
            ("service.instance.id", f"{platform.node()}:{os.getpid()}"),
            ("host.name", platform.node()), *(extra or {}).items())


class OtlpPusher:
    """A bounded queue and a sender thread; `submit` never blocks."""

    def __init__(self, options: PushOptions) -> None:
        self.options = options
        self.resource = default_resource(dict(options.resource))
        self._queue: queue.Queue[otel.Span | None] = queue.Queue(maxsize=options.queue_size)
        self.sent = self.dropped = self.failed = self.batches = 0
        self.last_error: str | None = None
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="ssetap-otlp", daemon=True)
        self._thread.start()

    def submit(self, span: otel.Span) -> None:
        try:
            self._queue.put_nowait(span)
        except queue.Full:
            self.dropped += 1

    def counts(self) -> PushCounts:
        return PushCounts(self.sent, self.dropped, self.failed, self.batches, self.last_error)

    def close(self, timeout: float = 15.0) -> PushCounts:
        """Send what is queued (within `timeout`), stop the thread, return the counts."""
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout + 1)
        # Whatever the thread could not take before the deadline was never sent.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.dropped += 1
        return self.counts()

    def _run(self) -> None:
        import httpx

        headers = {"Content-Type": "application/x-protobuf", **dict(self.options.headers)}
        with httpx.Client(timeout=self.options.timeout, trust_env=False) as client:
            stop = False
            while not stop:
                batch: list[otel.Span] = []
                first = self._queue.get()
                if first is None:
                    stop = True
                else:
                    batch.append(first)
                    until = time.monotonic() + self.options.batch_seconds
                    while len(batch) < self.options.batch_size:
                        wait = until - time.monotonic()
                        if self._closing.is_set():
                            wait = 0
                        try:
                            item = self._queue.get(timeout=wait) if wait > 0 \
                                else self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if item is None:
                            stop = True
                            break
                        batch.append(item)
                if batch:
                    self._post(client, headers, batch)
                if self._closing.is_set() and time.monotonic() > self._deadline:
                    break

    def _post(self, client: Any, headers: dict[str, str], batch: list[otel.Span]) -> None:
        import httpx

        body = encode(batch, self.resource)
        delay = self.options.backoff
        for attempt in range(self.options.retries + 1):
            try:
                response = client.post(self.options.traces_url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                retry = True
            else:
                if 200 <= response.status_code < 300:
                    self.sent += len(batch)
                    self.batches += 1
                    return
                self.last_error = f"HTTP {response.status_code}"
                retry = response.status_code in (429, 502, 503, 504) or \
                    response.status_code >= 500
            if not retry or attempt == self.options.retries:
                break
            if self._closing.is_set() and time.monotonic() + delay > self._deadline:
                break
            time.sleep(delay)
            delay *= 2
        self.failed += len(batch)


# --- The worker's side: a few lines there, the rest here ---------------------------------------

# The push options reach the worker in its environment, not its argv: a backend's auth header
# would be readable by every local user in /proc/PID/cmdline, the environment only by its owner.
ENV_VAR = "SSETAP_OTLP"


class LivePush:
    """Events in (recorder.otel_live), spans pushed (OtlpPusher), counts stored at close."""

    def __init__(self, options: PushOptions) -> None:
        from recorder.otel_live import LiveSpans

        self.options = options
        self.pusher = OtlpPusher(options)
        self.spans = LiveSpans(self.pusher.submit)
        self.observe = self.spans

    def tee(self, writer: Any) -> FlagTee:
        """`writer`, with the flags written through it also given to the spans."""
        return FlagTee(writer, self.spans.flag, self.spans.gap)

    def close(self, t: float, writer: Any) -> PushCounts:
        """Finish the open spans, push them, and store the counts in the capture's meta."""
        self.spans.close(t)
        counts = self.pusher.close()
        writer.set_meta(META_KEY, orjson.dumps({"endpoint": self.options.endpoint,
                                                **asdict(counts)}).decode())
        return counts


class FlagTee:
    """A store writer's stand-in that passes everything on and copies flags and capture gaps
    (recorder.gaps.CaptureGap, as rows) out."""

    def __init__(self, writer: Any, on_flag: Any, on_gap: Any) -> None:
        self._writer = writer
        self._on_flag = on_flag
        self._on_gap = on_gap

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self._writer.insert(table, row)
        if table == "flags":
            self._on_flag(row)

    def record_gap(self, gap: Any) -> None:
        self._writer.record_gap(gap)
        self._on_gap(gap.row(0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def from_environment(environ: Mapping[str, str] = os.environ) -> LivePush | None:
    """The worker's live push, if `ssetap record --otlp-endpoint` asked for one."""
    text = environ.get(ENV_VAR)
    return LivePush(PushOptions.from_json(text)) if text else None


def parse_header(value: str) -> tuple[str, str]:
    """`--otlp-header NAME=VALUE` (or `NAME: VALUE`) -> (name, value); ValueError if neither."""
    for sep in ("=", ":"):
        name, found, rest = value.partition(sep)
        if found and name.strip() and not any(c in name for c in " \t\r\n"):
            return name.strip(), rest.strip()
    raise ValueError(f"--otlp-header takes NAME=VALUE, got {value!r}")


def counts_line(meta_value: str) -> str | None:
    """The console summary line from the capture's `otlp_push` meta entry."""
    try:
        data = orjson.loads(meta_value)
        counts = PushCounts(data["sent"], data["dropped"], data["failed"], data["batches"],
                            data.get("last_error"))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return counts.summary(str(data.get("endpoint", "")))
