"""The ASGI application: ``/healthz``, ``/readyz``, ``POST /token`` and ``/api/…`` (HTTP and streams).

Routing is done here on the normalised path (see :mod:`gateway.paths`), not by a framework router, so
that what is decided is exactly what is forwarded. Starlette provides the request, response and
websocket types.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway import authorize, paths, rights, streams
from gateway.audit import Record, shown_claims
from gateway.identity import Identity, IssuerUnavailable, TokenRefused, Verifier, bearer_token
from gateway.policy import Grant, Policy
from gateway.proxy import FORWARDED_RESPONSE_HEADERS, Upstream, UpstreamUnavailable

BODY_LIMIT = 16 * 1024 * 1024
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass(frozen=True)
class Settings:
    policy: Policy
    upstream_auth_string: str
    signing_key: bytes
    debug: bool = False  # DEBUG=true: a failing request raises (a traceback in the log) instead of a 500


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = settings.policy
        self._started = False
        self.upstream: Upstream
        self.verifier: Verifier
        self.names: authorize.Names
        self._issuer_http: httpx.AsyncClient

    def _start(self) -> None:
        if self._started:
            return
        self.upstream = Upstream(self.policy.upstream, self.settings.upstream_auth_string)
        self._issuer_http = httpx.AsyncClient(follow_redirects=False, timeout=5.0)
        self.verifier = Verifier(self.policy, self.settings.signing_key, self._issuer_http)
        self.names = authorize.Names(self.upstream)
        self._started = True

    async def _stop(self) -> None:
        if self._started:
            await self.upstream.close()
            await self._issuer_http.aclose()
            self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        self._start()
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        if scope["type"] == "websocket":
            await self._websocket(WebSocket(scope, receive, send), raw)
            return
        request = Request(scope, receive)
        try:
            response = await self._http(request, raw)
        except Exception as exc:  # a bug must not take a traceback with request data to the answer
            if self.settings.debug:
                raise
            record = Record(request.method, "/")
            record.set(decision="error", reason=f"gateway error: {type(exc).__name__}")
            response = _answer(record, 500, {"detail": "the gateway failed on this request; see its audit line"})
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _http(self, request: Request, raw: bytes) -> Response:
        try:
            segments = paths.segments(raw)
        except paths.PathRefused as exc:
            record = Record(request.method, raw.decode("latin-1")[:300])
            return _answer(record, 400, {"detail": f"refused: {exc}"})
        if segments == ["healthz"] and request.method == "GET":
            return JSONResponse({"status": "ok"})
        if segments == ["readyz"] and request.method == "GET":
            ready = await self.upstream.ready()
            return JSONResponse(
                {"upstream": "reachable" if ready else "unreachable"}, status_code=200 if ready else 503
            )
        if segments == ["token"] and request.method == "POST":
            return await self._token(request)
        if segments and segments[0].lower() == paths.API_PREFIX:
            return await self._api(request, segments[1:])
        return JSONResponse({"detail": "not found: the gateway serves /api/…, /token, /healthz and /readyz"}, 404)

    async def _api(self, request: Request, segments: list[str]) -> Response:
        method = request.method.upper()
        record = Record(method, "/api/" + "/".join(segments))
        if method == rights.WS:  # the table's name for streams, not an HTTP method
            return _answer(record, 405, {"detail": "refused: WEBSOCKET is not an HTTP method"})
        if (header := paths.override_header(request.headers.keys())) is not None:
            return _answer(record, 400, {"detail": f"refused: the {header} header is not accepted by the gateway"})
        identity, failure = await self._identify(request.headers.get("authorization"), record)
        if failure is not None:
            return failure
        assert identity is not None
        grant = self.policy.grant(identity.claims)
        record.set(claims=shown_claims(identity.claims), rules=list(grant.rules))
        if grant.empty:
            return self._denied(record, identity, "any: no rule of the policy matches these claims")
        match = rights.match(method, segments)
        if match is None:
            return self._denied(record, identity, "none: the gateway knows no such Prefect endpoint")
        forward_path = match.forward_path()
        record.set(path="/api" + forward_path)
        if any(key.lower() == "include_secrets" for key, _ in parse_qsl(request.url.query, keep_blank_values=True)):
            return self._denied(record, identity, "none: secret values are never served through the gateway")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > BODY_LIMIT:
            return _answer(record, 413, {"detail": "refused: the request body is larger than 16 MiB"})
        body = await request.body()
        if len(body) > BODY_LIMIT:
            return _answer(record, 413, {"detail": "refused: the request body is larger than 16 MiB"})
        try:
            decision = await authorize.decide(match, grant, body, self.names)
        except UpstreamUnavailable as exc:
            return self._unavailable(record, exc)
        record.set(deployment=decision.deployment, deployment_id=decision.deployment_id, flow_run=decision.flow_run_id)
        if not decision.allowed:
            return self._denied(record, identity, decision.missing or "none")
        try:
            upstream = await self.upstream.send(
                method,
                forward_path,
                query=request.url.query.encode("latin-1"),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        except UpstreamUnavailable as exc:
            return self._unavailable(record, exc)
        record.set(decision="allow", upstream_status=upstream.status, status=upstream.status)
        headers = {k: v for k, v in upstream.headers.items() if k in FORWARDED_RESPONSE_HEADERS}
        if upstream.body is not None:
            if match.endpoint.need is rights.Need.DEPLOYMENT_RUN and upstream.status in (200, 201):
                record.set(flow_run=_created_id(upstream.body))
            record.write()
            return Response(upstream.body, status_code=upstream.status, headers=headers)

        async def body_stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.chunks():
                    yield chunk
            finally:
                record.write()

        return StreamingResponse(body_stream(), status_code=upstream.status, headers=headers)

    async def _identify(self, authorization: str | None, record: Record) -> tuple[Identity | None, Response | None]:
        token = bearer_token(authorization)
        if not token:
            return None, _answer(
                record,
                401,
                {
                    "detail": "unauthorized: send the step's OIDC token or a gateway session token as a Bearer token"
                    " (or as the password of an auth string, e.g. PREFECT_API_AUTH_STRING=bearer:<token>)"
                },
                {"www-authenticate": "Bearer"},
            )
        try:
            return await self.verifier.bearer(token), None
        except TokenRefused as exc:
            record.set(reason=str(exc))
            return None, _answer(record, 401, {"detail": f"unauthorized: {exc}"}, {"www-authenticate": "Bearer"})
        except IssuerUnavailable as exc:
            record.set(decision="error", reason=str(exc))
            return None, _answer(
                record, 503, {"detail": "the gateway cannot fetch the issuer's keys; try again"}, {"retry-after": "2"}
            )

    def _denied(self, record: Record, identity: Identity, missing: str) -> Response:
        record.set(missing_right=missing)
        claims = shown_claims(identity.claims)
        rules = record.fields.get("rules") or []
        seen = ", ".join(f"{name}={value}" for name, value in claims.items())
        matched = f"the rules matching them ({', '.join(rules)}) do not grant it" if rules else "no rule matches them"
        detail = (
            f"denied: this request needs the right {missing!r}; claims seen: {seen}; {matched}; "
            "add a rule for these claims to the gateway's policy"
        )
        return _answer(record, 403, {"detail": detail, "missing_right": missing, "claims": claims, "rules": rules})

    def _unavailable(self, record: Record, exc: UpstreamUnavailable) -> Response:
        record.set(decision="error", reason=f"upstream: {exc}")
        return _answer(
            record,
            502,
            {"detail": f"bad gateway: the Prefect server behind the gateway did not answer ({exc}); try again later"},
        )

    # -- Token exchange (RFC 8693) -------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        record = Record("POST", "/token")
        body = await request.body()
        if len(body) > 64 * 1024 or "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return _oauth(record, 400, "invalid_request", "send an application/x-www-form-urlencoded body (RFC 8693)")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant_type, subject = form.get("grant_type"), form.get("subject_token")
        subject_type = form.get("subject_token_type")
        if grant_type != GRANT_TYPE:
            return _oauth(record, 400, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE}")
        if (
            not isinstance(subject, str)
            or not subject
            or subject_type not in (JWT_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:id_token")
        ):
            return _oauth(
                record, 400, "invalid_request", f"send the step's OIDC token as subject_token of type {JWT_TOKEN_TYPE}"
            )
        try:
            identity = await self.verifier.subject(subject)
        except TokenRefused as exc:
            return _oauth(record, 400, "invalid_grant", str(exc))
        except IssuerUnavailable as exc:
            record.set(decision="error", reason=str(exc))
            return _oauth(record, 503, "temporarily_unavailable", "the gateway cannot fetch the issuer's keys")
        grant = self.policy.grant(identity.claims)
        claims = shown_claims(identity.claims)
        record.set(claims=claims, rules=list(grant.rules))
        if grant.empty:
            described = ", ".join(f"{k}={v}" for k, v in claims.items())
            return _oauth(
                record, 403, "access_denied", f"no rule of the gateway's policy matches these claims: {described}"
            )
        token, lifetime = self.verifier.issue_session(identity)
        record.set(decision="allow", status=200)
        record.write()
        return JSONResponse(
            {
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": lifetime,
            },
            headers={"cache-control": "no-store"},
        )

    # -- Streams -------------------------------------------------------------------------------------

    async def _websocket(self, websocket: WebSocket, raw: bytes) -> None:
        record = Record("WEBSOCKET", raw.decode("latin-1")[:300])
        try:
            segments = paths.segments(raw)
        except paths.PathRefused as exc:
            record.set(reason=str(exc))
            record.write()
            await websocket.close(1008, "refused path")
            return
        match = rights.match(rights.WS, segments[1:]) if segments and segments[0].lower() == paths.API_PREFIX else None
        if match is None:
            record.set(reason="no such stream")
            record.write()
            await websocket.close(1008, "no such stream")
            return
        record.set(path="/api" + match.forward_path())

        def permit(identity: Identity) -> tuple[Grant, str | None]:
            grant = self.policy.grant(identity.claims)
            need = match.endpoint.need
            if need is rights.Need.READ and grant.read:
                return grant, None
            return (
                grant,
                "read" if need is rights.Need.READ else "none: this stream is not available through the gateway",
            )

        try:
            handshake = bearer_token(websocket.headers.get("authorization"))
            await streams.relay(
                websocket, match.forward_path(), self.upstream, self.verifier.bearer, permit, record, handshake
            )
        finally:
            record.write()


def _answer(record: Record, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    record.set(status=status)
    record.write()
    return JSONResponse(dict(body), status_code=status, headers=dict(headers or {}))


def _oauth(record: Record, status: int, error: str, description: str) -> Response:
    record.set(reason=f"{error}: {description}")
    return _answer(record, status, {"error": error, "error_description": description}, {"cache-control": "no-store"})


def _created_id(content: bytes) -> str | None:
    try:
        value = json.loads(content)
    except ValueError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def create_app(settings: Settings) -> Gateway:
    return Gateway(settings)


def app_from_environment() -> Gateway:
    """The application of a uvicorn worker process (``--workers N``): settings from the environment."""
    from gateway.cli import settings_from_environment

    return Gateway(settings_from_environment())
