"""Security detectors: credentials in URLs, plain HTTP, CORS, Origin, missing auth.

Findings are per server (or per server and path), not per request: a server that takes tokens
in its URLs does so on every call. Only MCP traffic is judged (an exchange ingest marked MCP,
or a path that carried MCP before).
"""

from __future__ import annotations

from recorder.events import ExchangeEnded, ResponseSeen
from recorder.health.context import Context, Detector
from recorder.health.registry import (
    MISSING_AUTH,
    ORIGIN_ACCEPTED,
    PLAINTEXT_REMOTE,
    TOKEN_IN_URL,
    WILDCARD_CORS,
)
from recorder.health.state import ExchangeState, foreign_origin, is_loopback_host
from recorder.secrets import secret_query_params


def credential_params(url: str) -> list[str]:
    """The query parameters of `url` that carry a credential: the one secrets classifier's
    answer (recorder.secrets), so `token-in-url` names exactly what redaction replaces."""
    return sorted(set(secret_query_params(url)))


class SecurityChecks(Detector):
    """Security detectors: credentials in URLs, plain HTTP, CORS, Origin, missing auth."""

    HANDLES = {ResponseSeen: "_on_response", ExchangeEnded: "_on_exchange_end"}

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._challenged: set[str] = set()  # servers that answered 401: they do ask for auth

    def _on_response(self, e: ResponseSeen) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is None:
            return
        if e.status == 401:
            self._challenged.add(ex.server)
        if ex.session_id is not None:
            self._check_url(e.t, ex)
        if ex.mcp:
            self._check_response_security(e.t, ex, ex.response_headers, 200 <= e.status < 300)

    def _on_exchange_end(self, e: ExchangeEnded) -> None:
        ex = self.ctx.exchanges.get(e.id)
        if ex is not None:
            self._check_url(e.t, ex)  # if the response did not already (its session came late)

    def _is_remote(self, ex: ExchangeState) -> bool:
        remote = self.config.remote_hosts
        if ex.host in remote or f"{ex.host}:{ex.port}" in remote:
            return True
        return not is_loopback_host(ex.host)

    def _check_url(self, t: float, ex: ExchangeState) -> None:
        if not (ex.mcp or (ex.server, ex.path) in self.ctx.mcp_paths):
            return
        names = credential_params(ex.url)
        if names:
            listed = ", ".join(names)
            self.ctx.flag(
                TOKEN_IN_URL, (ex.server, ex.path, tuple(names)), t,
                f"{ex.method} {ex.path} on {ex.server} carries a credential in its URL query "
                f"({listed}); URLs end up in proxy and server logs and browser history, and MCP "
                "forbids tokens in the query string: send them in the Authorization header",
                session_id=ex.session_id, exchange_id=ex.id, params=names,
            )
        if ex.scheme == "http" and self._is_remote(ex):
            self.ctx.flag(
                PLAINTEXT_REMOTE, (ex.server,), t,
                f"MCP traffic to {ex.server} travels over plain HTTP to a remote host; "
                "anyone on the path can read and inject tokens, session ids and tool results. "
                "Usual cause: a missing TLS terminator or an http:// URL in the client config",
                session_id=ex.session_id, exchange_id=ex.id, server=ex.server,
            )

    def _check_response_security(self, t: float, ex: ExchangeState, headers: dict[str, str],
                                 ok: bool) -> None:
        allow = headers.get("access-control-allow-origin", "").strip()
        origin = ex.headers.get("origin")
        if allow == "*" or (allow and origin and allow == origin and foreign_origin(origin)):
            credentials = headers.get("access-control-allow-credentials", "").lower() == "true"
            how = "'*'" if allow == "*" else f"the request's own Origin ({allow})"
            self.ctx.flag(
                WILDCARD_CORS, (ex.server,), t,
                f"{ex.server} answers {ex.method} {ex.path} with Access-Control-Allow-Origin: "
                f"{how}{' and Allow-Credentials: true' if credentials else ''}: any web page "
                "can call this MCP server from a browser (DNS-rebinding and CSRF risk). "
                "Usual cause: a permissive CORS middleware default",
                session_id=ex.session_id, exchange_id=ex.id, allow_origin=allow,
                credentials=credentials,
            )
        if ok and origin and foreign_origin(origin) and not self._is_remote(ex):
            self.ctx.flag(
                ORIGIN_ACCEPTED, (ex.server,), t,
                f"loopback server {ex.server} answered {ex.status} to {ex.method} {ex.path} "
                f"from foreign Origin {origin!r}; MCP servers must reject it with 403, or a web "
                "page can drive the local server (DNS rebinding). Usual cause: no Origin "
                "validation (see the SDKs' DNS-rebinding protection)",
                session_id=ex.session_id, exchange_id=ex.id, origin=origin,
            )
        if ok and ex.method == "POST" and "authorization" not in ex.headers \
                and self._is_remote(ex) and ex.server not in self._challenged:
            self.ctx.flag(
                MISSING_AUTH, (ex.server,), t,
                f"remote server {ex.server} answered {ex.status} to an MCP request without any "
                "Authorization header and has sent no 401 challenge; anyone who can reach it "
                "can use its tools. Usual cause: authentication left off a public endpoint",
                session_id=ex.session_id, exchange_id=ex.id,
            )
