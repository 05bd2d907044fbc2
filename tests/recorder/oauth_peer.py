"""A real OAuth-protected MCP server (SDK v1 FastMCP with its own authorization server routes)
and the SDK's client OAuth support, on loopback, for the secrets corpus.

The authorization server is the SDK's (`create_auth_routes`: metadata, dynamic client
registration, `/authorize` redirecting with `code` and `state`, `/token`), behind an in-memory
provider that remembers every secret it hands out, so the test can search captures for them.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.server.fastmcp import FastMCP
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from recorder.demo_server import ServerHandle
from tests.recorder.secrets_corpus import random_secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Provider:
    """In-memory OAuthAuthorizationServerProvider that remembers what it issued."""

    issued: list[str] = field(default_factory=list)
    clients: dict[str, OAuthClientInformationFull] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    tokens: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)

    def _new(self, prefix: str) -> str:
        value = random_secret(prefix)
        self.issued.append(value)
        return value

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        if client_info.client_secret:
            self.issued.append(client_info.client_secret)
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client: OAuthClientInformationFull,
                        params: AuthorizationParams) -> str:
        code = self._new("code")
        assert client.client_id is not None
        self.codes[code] = AuthorizationCode(
            code=code, scopes=params.scopes or [], expires_at=time.time() + 300,
            client_id=client.client_id, code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource)
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client: OAuthClientInformationFull,
                                      authorization_code: str) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(self, client: OAuthClientInformationFull,
                                          authorization_code: AuthorizationCode) -> OAuthToken:
        self.codes.pop(authorization_code.code, None)
        access, refresh = self._new("at"), self._new("rt")
        assert client.client_id is not None
        self.tokens[access] = AccessToken(token=access, client_id=client.client_id,
                                          scopes=authorization_code.scopes,
                                          expires_at=int(time.time()) + 3600,
                                          resource=authorization_code.resource)
        self.refresh[refresh] = RefreshToken(token=refresh, client_id=client.client_id,
                                             scopes=authorization_code.scopes)
        return OAuthToken(access_token=access, token_type="Bearer", expires_in=3600,
                          refresh_token=refresh)

    async def load_refresh_token(self, client: OAuthClientInformationFull,
                                 refresh_token: str) -> RefreshToken | None:
        return self.refresh.get(refresh_token)

    async def exchange_refresh_token(self, client: OAuthClientInformationFull,
                                     refresh_token: RefreshToken, scopes: list[str]) -> OAuthToken:
        raise NotImplementedError

    async def load_access_token(self, token: str) -> AccessToken | None:
        return self.tokens.get(token)

    async def revoke_token(self, token: Any) -> None:
        pass


class Snoop:
    """ASGI wrapper keeping the bodies of token requests (the client's PKCE verifier is there)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.token_requests: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/token":
            await self.app(scope, receive, send)
            return
        parts, more = [], True
        while more:
            message = await receive()
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        self.token_requests.append(dict(parse_qsl(body.decode())))
        done = False

        async def replay() -> Any:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def start_oauth_server(port: int, public_url: str) -> tuple[ServerHandle, Provider, Snoop]:
    """FastMCP on 127.0.0.1:`port`, its issuer and resource at `public_url` (the proxy)."""
    provider = Provider()
    mcp = FastMCP(
        "ssetap-oauth-peer",
        auth_server_provider=provider,
        auth=AuthSettings(issuer_url=public_url, resource_server_url=f"{public_url}/mcp",
                          client_registration_options=ClientRegistrationOptions(enabled=True),
                          validate_token_resource=False),
    )

    @mcp.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @mcp.tool()
    def login(user: str, password: str) -> str:
        """Pretend to log in."""
        return f"welcome {user}"

    snoop = Snoop(mcp.streamable_http_app())
    handle = ServerHandle(snoop, transport="streamable-http", host="127.0.0.1", port=port,
                          ping_interval=None)
    handle.start(timeout=10.0)
    return handle, provider, snoop


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def oauth_client(server_url: str) -> tuple[OAuthClientProvider, dict[str, str]]:
    """The SDK's OAuth client; the "browser" follows the authorization URL through the proxy
    without following its redirect, and hands the `code` and `state` of `Location` back."""
    seen: dict[str, str] = {}

    async def redirect_handler(authorization_url: str) -> None:
        seen["authorization_url"] = authorization_url
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            response = await client.get(authorization_url)
        location = response.headers["location"]
        query = parse_qs(urlsplit(location).query)
        seen["code"], seen["state"] = query["code"][0], query["state"][0]

    async def callback_handler() -> tuple[str, str | None]:
        return seen["code"], seen.get("state")

    metadata = OAuthClientMetadata(client_name="ssetap corpus client",
                                   redirect_uris=["http://127.0.0.1:9/callback"],
                                   grant_types=["authorization_code", "refresh_token"],
                                   response_types=["code"])
    provider = OAuthClientProvider(server_url=server_url, client_metadata=metadata,  # type: ignore[arg-type]
                                   storage=MemoryStorage(), redirect_handler=redirect_handler,
                                   callback_handler=callback_handler)
    return provider, seen
