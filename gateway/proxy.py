"""The upstream Prefect server: one pooled httpx client holding the server's auth string.

Requests are forwarded with a total deadline and never follow redirects. A request that never reached
the server (connection refused, connect timeout, a pool slot that did not free up) is retried twice;
a GET is also retried when the connection broke before an answer. Nothing else is retried.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import httpx

DEADLINE = 30.0  # seconds, for one forwarded request (headers and a buffered body)
ATTEMPTS = 3
PAUSES = (0.1, 0.3)
# Request headers passed on to Prefect (everything else, Authorization first, is dropped).
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "user-agent", "x-prefect-api-version")
# Response headers passed back.
FORWARDED_RESPONSE_HEADERS = ("content-type", "retry-after", "content-disposition")
BUFFER_LIMIT = 8 * 1024 * 1024


class UpstreamUnavailable(Exception):
    """The Prefect server could not be reached or did not answer in time."""


def _never_sent(exc: Exception) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


class Upstream:
    def __init__(self, base_url: str, auth_string: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_base = "ws" + self.base_url.removeprefix("http")  # http→ws, https→wss
        self._auth_string = auth_string
        self._authorization = "Basic " + base64.b64encode(auth_string.encode("utf-8")).decode("ascii")
        self.http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(DEADLINE, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=4.0),
        )

    def stream_auth_message(self) -> dict[str, str]:
        """The first message of an upstream websocket (Prefect compares its token to the auth string)."""
        return {"type": "auth", "token": self._auth_string}

    async def close(self) -> None:
        await self.http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> httpx.Response:
        """Forward one request; the answer's body is buffered unless it is large or of unknown size."""
        url = self.base_url + path + ("?" + query.decode("latin-1") if query else "")
        out = {name: value for name, value in (headers or {}).items() if name in FORWARDED_REQUEST_HEADERS}
        out["authorization"] = self._authorization
        request = self.http.build_request(method, url, headers=out, content=body or None)
        for attempt in range(ATTEMPTS):
            try:
                async with asyncio.timeout(DEADLINE):
                    response = await self.http.send(request, stream=True)
                    size = response.headers.get("content-length")
                    if size is not None and size.isdigit() and int(size) <= BUFFER_LIMIT:
                        await response.aread()
                    return response
            except (httpx.TransportError, TimeoutError) as exc:
                retry = _never_sent(exc) or (method == "GET" and isinstance(exc, httpx.TransportError))
                if not retry or attempt == ATTEMPTS - 1:
                    raise UpstreamUnavailable(type(exc).__name__) from None
                await asyncio.sleep(PAUSES[attempt])
        raise AssertionError("unreachable")

    async def read_json(self, path: str) -> dict[str, Any] | None:
        """A JSON object read with the server's credential (None when the server answers 404)."""
        response = await self.send("GET", path, headers={"accept": "application/json"})
        try:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise UpstreamUnavailable(f"HTTP {response.status_code} reading {path}")
            body = response.json()
        except ValueError:
            raise UpstreamUnavailable(f"a non-JSON answer reading {path}") from None
        finally:
            await response.aclose()
        return body if isinstance(body, dict) else None

    async def ready(self) -> bool:
        try:
            response = await self.http.get(self.base_url + "/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
