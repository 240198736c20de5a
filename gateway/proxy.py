"""The upstream Prefect server: one connection pool holding the server's auth string.

Built on httpcore, the connection pool under httpx (same pinned release): a proxied request costs
about 40 % less CPU than through ``httpx.AsyncClient``'s request/response models, and the gateway needs
none of their features (cookies, auth flows, redirects, environment proxies). Requests are forwarded
with a total deadline and never follow redirects. A request that never reached the server (connection
refused, connect timeout, no pool slot) is retried twice; a GET is also retried when the connection
broke before an answer. Nothing else is retried.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore

DEADLINE = 30.0  # seconds, for one forwarded request (headers and a buffered body)
ATTEMPTS = 3
PAUSES = (0.1, 0.3)
TIMEOUTS = {"connect": 5.0, "read": DEADLINE, "write": DEADLINE, "pool": 5.0}
# Request headers passed on to Prefect (everything else, Authorization first, is dropped).
FORWARDED_REQUEST_HEADERS = frozenset({"content-type", "accept", "user-agent", "x-prefect-api-version"})
# Response headers passed back.
FORWARDED_RESPONSE_HEADERS = frozenset({"content-type", "retry-after", "content-disposition"})
BUFFER_LIMIT = 8 * 1024 * 1024
NEVER_SENT = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout)
TRANSPORT_ERRORS = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError)


class UpstreamUnavailable(Exception):
    """The Prefect server could not be reached or did not answer in time."""


@dataclass
class Answer:
    """The server's answer: the body buffered (``body``), or to be streamed (``chunks``, then ``close``)."""

    status: int
    headers: dict[str, str]
    body: bytes | None
    _response: httpcore.Response

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_stream():
                yield chunk
        finally:
            await self._response.aclose()

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class Upstream:
    def __init__(self, base_url: str, auth_string: str) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._scheme = parts.scheme.encode()
        self._host = (parts.hostname or "").encode()
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc.encode()
        self.ws_base = "ws" + self.base_url.removeprefix("http")  # http→ws, https→wss
        self._auth_string = auth_string
        self._authorization = b"Basic " + base64.b64encode(auth_string.encode("utf-8"))
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=200, max_keepalive_connections=50, keepalive_expiry=4.0, retries=0
        )

    def stream_auth_message(self) -> dict[str, str]:
        """The first message of an upstream websocket (Prefect compares its token to the auth string)."""
        return {"type": "auth", "token": self._auth_string}

    async def close(self) -> None:
        await self._pool.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        timeout: float = DEADLINE,
    ) -> Answer:
        """Forward one request (``path`` relative to the API root); small bodies are buffered."""
        target = (self._prefix + path).encode("utf-8") + (b"?" + query if query else b"")
        out = [(b"host", self._host_header), (b"authorization", self._authorization)]
        out += [(k.encode(), v.encode("latin-1")) for k, v in (headers or {}).items() if k in FORWARDED_REQUEST_HEADERS]
        if body or method in ("POST", "PUT", "PATCH"):
            out.append((b"content-length", str(len(body)).encode()))
        url = httpcore.URL(scheme=self._scheme, host=self._host, port=self._port, target=target)
        for attempt in range(ATTEMPTS):
            request = httpcore.Request(
                method.encode(), url, headers=out, content=body, extensions={"timeout": TIMEOUTS}
            )
            try:
                async with asyncio.timeout(timeout):
                    response = await self._pool.handle_async_request(request)
                    answer_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                    size = answer_headers.get("content-length", "")
                    content = None
                    if size.isdigit() and int(size) <= BUFFER_LIMIT:
                        try:
                            content = await response.aread()
                        finally:
                            await response.aclose()
                    return Answer(response.status, answer_headers, content, response)
            except (*TRANSPORT_ERRORS, TimeoutError) as exc:
                retry = isinstance(exc, NEVER_SENT) or (method == "GET" and not isinstance(exc, TimeoutError))
                if not retry or attempt == ATTEMPTS - 1:
                    raise UpstreamUnavailable(type(exc).__name__) from None
                await asyncio.sleep(PAUSES[attempt])
        raise AssertionError("unreachable")

    async def read_json(self, path: str) -> dict[str, Any] | None:
        """A JSON object read with the server's credential (None when the server answers 404)."""
        answer = await self.send("GET", path, headers={"accept": "application/json"})
        if answer.body is None:
            await answer._response.aclose()
            raise UpstreamUnavailable(f"an answer of unknown size reading {path}")
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise UpstreamUnavailable(f"HTTP {answer.status} reading {path}")
        try:
            body = answer.json()
        except ValueError:
            raise UpstreamUnavailable(f"a non-JSON answer reading {path}") from None
        return body if isinstance(body, dict) else None

    async def ready(self) -> bool:
        try:
            answer = await self.send("GET", "/health", timeout=2.0)
        except UpstreamUnavailable:
            return False
        if answer.body is None:
            await answer._response.aclose()
        return answer.status == 200
