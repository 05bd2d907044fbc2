"""Bare-streaming baseline for `bench/stream_bench.py`: `mitmdump -s bench/stream_addon.py`.

Sets `flow.response.stream = True` in `responseheaders` (without it mitmproxy buffers a whole
SSE body), and nothing else, so the benchmark can tell mitmproxy's own per-chunk cost from the
recorder's. It also prints the port mitmproxy actually bound (the benchmark listens on port 0),
in the same words `ssetap record` uses.
"""

from __future__ import annotations

import sys

from mitmproxy import ctx, http


class StreamAll:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            flow.response.stream = True

    def running(self) -> None:
        addrs = ctx.master.addons.get("proxyserver").listen_addrs()  # type: ignore[no-untyped-call]
        if addrs:
            host, port = addrs[0][:2]
            print(f"bench: listening on http://{host}:{port}", file=sys.stderr, flush=True)


addons = [StreamAll()]
