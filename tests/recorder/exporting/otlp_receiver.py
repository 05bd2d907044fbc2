"""A minimal OTLP/HTTP traces receiver on loopback for the pusher's tests (protobuf decoded
with opentelemetry-proto). It can answer with errors first, or stall, to test retries and drops."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Receiver:
    def __init__(self, *, fail_first: int = 0, status: int = 503, stall: float = 0.0) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.status = status
        self.stall = stall
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.attempts += 1
                if receiver.stall:
                    time.sleep(receiver.stall)
                if receiver.attempts <= receiver.fail_first or self.path != "/v1/traces":
                    self.send_response(receiver.status if self.path == "/v1/traces" else 404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[Any, Any]]:
        """(resource, span) of every span received."""
        return [(rs.resource, span) for request in self.requests for rs in request.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
