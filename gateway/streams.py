"""Websocket streams (``/api/events/out``, ``/api/logs/out``): checked like HTTP, then relayed.

Prefect's clients authenticate a stream with a first message ``{"type": "auth", "token": …}``. The
gateway verifies that token (an issuer or session token), decides the stream's right, opens the
upstream stream with the server's auth string as the token, answers ``auth_success`` once the server
did, and then relays both directions frame by frame until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from gateway.audit import Record, shown_claims
from gateway.identity import Identity, IssuerUnavailable, TokenRefused, auth_string_token
from gateway.policy import Grant
from gateway.proxy import Upstream

AUTH_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0  # the server's answer to the gateway's close, once the client has gone
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
NO_TOKEN = "no token: send it in the auth message or as an Authorization: Bearer header (PREFECT_CLIENT_CUSTOM_HEADERS)"


class _NoRedirects(connect):
    """A websocket connect that never follows a redirect (the auth message goes to the server only)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def relay(
    websocket: WebSocket,
    path: str,
    upstream: Upstream,
    verify: Callable[[str], Awaitable[Identity]],
    permit: Callable[[Identity], tuple[Grant, str | None]],
    record: Record,
    handshake_token: str | None = None,
) -> None:
    """Authenticate the client's stream, then relay it to ``path`` upstream (API-relative, canonical).

    The token is the auth message's; when that is null (Prefect's clients send ``null`` there with an
    API key to any server but Prefect Cloud), the handshake's ``Authorization: Bearer`` header (e.g.
    from ``PREFECT_CLIENT_CUSTOM_HEADERS``) is used instead.
    """
    offered = [p.strip() for h in websocket.headers.getlist("sec-websocket-protocol") for p in h.split(",")]
    await websocket.accept(subprotocol="prefect" if "prefect" in offered else None)
    try:
        first = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT)
        message = json.loads(first)
    except (TimeoutError, WebSocketDisconnect, ValueError, KeyError):
        record.set(status=POLICY_VIOLATION, reason="no auth message")
        await _close(websocket, POLICY_VIOLATION, "Expected 'auth' message")
        return
    if not isinstance(message, dict) or message.get("type") != "auth":
        record.set(status=POLICY_VIOLATION, reason="the first message is not an auth message")
        await _close(websocket, POLICY_VIOLATION, "Expected 'auth' message")
        return
    sent = message.get("token")
    # Prefect sends PREFECT_API_AUTH_STRING as the token: ``bearer:<token>`` carries the caller's token.
    token = (auth_string_token(sent) if isinstance(sent, str) else None) or handshake_token
    if not isinstance(token, str) or not token:
        record.set(status=POLICY_VIOLATION, reason=NO_TOKEN)
        await _close(websocket, POLICY_VIOLATION, _short(NO_TOKEN))
        return
    try:
        identity = await verify(token)
    except TokenRefused as exc:
        record.set(status=POLICY_VIOLATION, reason=str(exc))
        await _close(websocket, POLICY_VIOLATION, _short(f"Invalid token: {exc}"))
        return
    except IssuerUnavailable as exc:
        record.set(status=TRY_AGAIN_LATER, reason=str(exc))
        await _close(websocket, TRY_AGAIN_LATER, "the gateway cannot fetch the issuer's keys")
        return
    grant, missing = permit(identity)
    record.set(claims=shown_claims(identity.claims), rules=list(grant.rules))
    if missing is not None:
        record.set(status=POLICY_VIOLATION, missing_right=missing)
        await _close(websocket, POLICY_VIOLATION, _short(f"denied: this stream needs the right {missing}"))
        return

    try:
        server = await _NoRedirects(
            upstream.ws_base + path,
            subprotocols=[Subprotocol("prefect")],
            proxy=None,
            open_timeout=10,
            close_timeout=CLOSE_TIMEOUT,
            max_size=None,
        )
    except Exception as exc:
        record.set(decision="error", status=INTERNAL_ERROR, reason=f"upstream stream: {type(exc).__name__}")
        await _close(websocket, INTERNAL_ERROR, "the Prefect server behind the gateway is unreachable")
        return
    try:
        await server.send(json.dumps(upstream.stream_auth_message()))
        answer = json.loads(await asyncio.wait_for(server.recv(), AUTH_TIMEOUT))
        if not isinstance(answer, dict) or answer.get("type") != "auth_success":
            raise ConnectionError("the server refused the gateway's credential")
        await websocket.send_text(json.dumps({"type": "auth_success"}))
        record.set(decision="allow", upstream_status=101)
        await _pump(websocket, server)
        record.set(status=1000)
    except (ConnectionError, ConnectionClosed, TimeoutError, ValueError) as exc:
        record.set(decision="error", status=INTERNAL_ERROR, reason=f"upstream stream: {type(exc).__name__}")
        await _close(websocket, INTERNAL_ERROR, "the Prefect server closed the stream")
    finally:
        with contextlib.suppress(Exception):
            await server.close()


async def _pump(websocket: WebSocket, server: ClientConnection) -> None:
    async def client_to_server() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await server.send(message["text"])
            elif message.get("bytes") is not None:
                await server.send(message["bytes"])

    async def server_to_client() -> None:
        async for frame in server:
            if isinstance(frame, str):
                await websocket.send_text(frame)
            else:
                await websocket.send_bytes(frame)
        await _close(websocket, 1000, "")

    tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code, reason)


def _short(text: str) -> str:
    """A close reason fits in 123 bytes."""
    data = text.encode("utf-8")[:123]
    return data.decode("utf-8", "ignore")
