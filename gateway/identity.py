"""Who is calling: the issuer's tokens (verified against its JWKS) and the gateway's own session tokens.

* Issuer tokens (Bitbucket step OIDC tokens): asymmetric algorithms of the policy only (never ``none``,
  never HMAC), a key from the issuer's JWKS by ``kid`` (discovered from
  ``<issuer>/.well-known/openid-configuration`` or the policy's ``jwks_url``; cached, refetched on an
  unknown ``kid`` at most once per ``jwks_refetch_seconds``), ``iss``, ``aud`` and ``exp``/``nbf``/``iat``
  with the policy's leeway.
* Session tokens: HS256 with the gateway's signing key (shared by the replicas, so any replica verifies
  any other's), issued by ``POST /token`` for a verified issuer token; they carry the caller's claims and
  are never accepted as subject tokens.

Verified tokens are cached by SHA-256 digest until they expire, so a busy caller pays one signature
check per token, not per request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import jwt

from gateway.policy import CLAIMS, Policy, url_problem

SESSION_ISSUER = "urn:prefect-gateway:session"
SESSION_AUDIENCE = "urn:prefect-gateway:api"
SESSION_ALGORITHM = "HS256"
CACHE_SIZE = 10_000
FETCH_TIMEOUT = 5.0
FAILED_FETCH_PAUSE = 5.0


def bearer_token(authorization: str | None) -> str | None:
    """The caller's token from ``Authorization``: ``Bearer <token>``, or ``Basic`` of ``<user>:<token>``
    (Prefect clients send ``PREFECT_API_AUTH_STRING`` that way, and the same string as their streams'
    auth token, so ``PREFECT_API_AUTH_STRING=bearer:<token>`` identifies HTTP and streams alike)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return auth_string_token(decoded)
    return None


def auth_string_token(text: str) -> str | None:
    """The token in an auth string ``<user>:<token>`` (a JWT has no colon), or the text itself."""
    return text.rsplit(":", 1)[-1].strip() or None


class TokenRefused(Exception):
    """The caller's token is not accepted; the message says why (never the token itself)."""


class IssuerUnavailable(Exception):
    """The issuer's discovery document or keys could not be fetched (a gateway-side problem)."""


@dataclass(frozen=True)
class Identity:
    claims: Mapping[str, Any]
    kind: Literal["issuer", "session"]
    expires: float


class IssuerKeys:
    """The issuer's JWKS, fetched on first use and refetched on an unknown ``kid`` (rate-limited)."""

    def __init__(self, policy: Policy, http: httpx.AsyncClient) -> None:
        self._policy = policy
        self._http = http
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and self._may_fetch():
                await self._fetch()
        if kid not in self._keys:
            raise TokenRefused(f"the token's key id {kid!r} is not among the issuer's keys")
        return self._keys[kid]

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self._policy.jwks_refetch_seconds

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            await self._fetch_keys()
        except IssuerUnavailable:
            # A failed fetch may be retried after FAILED_FETCH_PAUSE, not after the whole interval.
            pause = min(FAILED_FETCH_PAUSE, self._policy.jwks_refetch_seconds)
            self._fetched_at = time.monotonic() - self._policy.jwks_refetch_seconds + pause
            raise

    async def _fetch_keys(self) -> None:
        jwks_url = self._policy.jwks_url
        if jwks_url is None:
            discovery = await self._get_json(f"{self._policy.issuer}/.well-known/openid-configuration")
            found = discovery.get("jwks_uri")
            if not isinstance(found, str) or url_problem(found):
                raise IssuerUnavailable("the issuer's discovery document has no usable jwks_uri")
            jwks_url = found
        document = await self._get_json(jwks_url)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue  # never a shared-secret key for issuer tokens
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
        self._keys = keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, timeout=FETCH_TIMEOUT)
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnavailable(f"fetching {url} failed ({type(exc).__name__})") from None
        if not isinstance(body, dict):
            raise IssuerUnavailable(f"{url} answered HTTP {response.status_code} without a JSON object")
        return body


class Verifier:
    def __init__(self, policy: Policy, signing_key: bytes, http: httpx.AsyncClient) -> None:
        self._policy = policy
        self._signing_key = signing_key
        self._keys = IssuerKeys(policy, http)
        self._cache: dict[bytes, Identity] = {}

    async def bearer(self, token: str) -> Identity:
        """A token presented on a request: an issuer token or one of this gateway's session tokens."""
        return await self._verify(token, sessions=True)

    async def subject(self, token: str) -> Identity:
        """A token offered for exchange: issuer tokens only."""
        return await self._verify(token, sessions=False)

    def issue_session(self, identity: Identity) -> tuple[str, int]:
        """A session token for a verified issuer identity, and its lifetime in seconds."""
        now = int(time.time())
        limit = int(identity.expires) + self._policy.session_max_beyond_subject_seconds
        expires = min(now + self._policy.session_lifetime_seconds, limit)
        carried = {name: identity.claims[name] for name in CLAIMS if name in identity.claims}
        payload = {
            "iss": SESSION_ISSUER,
            "aud": SESSION_AUDIENCE,
            "iat": now,
            "exp": expires,
            "sub": str(identity.claims.get("sub", "")),
            "idt": carried,
        }
        return jwt.encode(payload, self._signing_key, algorithm=SESSION_ALGORITHM), max(0, expires - now)

    async def _verify(self, token: str, *, sessions: bool) -> Identity:
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        cached = self._cache.get(digest)
        if cached is not None and cached.expires > time.time():
            if cached.kind == "session" and not sessions:
                raise TokenRefused("a gateway session token cannot be exchanged; send the step's OIDC token")
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("the token is not a JWT") from None
        alg = header.get("alg")
        if alg == SESSION_ALGORITHM and self._is_session(token):
            if not sessions:
                raise TokenRefused("a gateway session token cannot be exchanged; send the step's OIDC token")
            identity = self._session(token)
        else:
            identity = await self._issuer(token, header)
        self._remember(digest, identity)
        return identity

    @staticmethod
    def _is_session(token: str) -> bool:
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == SESSION_ISSUER
        except jwt.PyJWTError:
            return False

    def _session(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._signing_key,
                algorithms=[SESSION_ALGORITHM],
                audience=SESSION_AUDIENCE,
                issuer=SESSION_ISSUER,
                leeway=self._policy.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"the session token is not valid: {_reason(exc, self._policy)}") from None
        carried = claims.get("idt")
        if not isinstance(carried, dict):
            raise TokenRefused("the session token carries no claims")
        return Identity(claims={**carried, "sub": claims.get("sub", "")}, kind="session", expires=float(claims["exp"]))

    async def _issuer(self, token: str, header: Mapping[str, Any]) -> Identity:
        alg = header.get("alg")
        if alg not in self._policy.algorithms:
            raise TokenRefused(
                f"the token's algorithm {alg!r} is not accepted (accepted: {', '.join(self._policy.algorithms)})"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("the token has no key id (kid)")
        key = await self._keys.key(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[str(alg)],
                audience=list(self._policy.audiences),
                issuer=self._policy.issuer,
                leeway=self._policy.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"the token is not valid: {_reason(exc, self._policy)}") from None
        return Identity(claims=claims, kind="issuer", expires=float(claims["exp"]))

    def _remember(self, digest: bytes, identity: Identity) -> None:
        if len(self._cache) >= CACHE_SIZE:
            now = time.time()
            self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
            while len(self._cache) >= CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = identity


def _reason(exc: jwt.PyJWTError, policy: Policy) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "it has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "it is not valid yet (nbf/iat in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"its audience is not one of this gateway's ({', '.join(policy.audiences)})"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"its issuer is not {policy.issuer}"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"it has no {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "its signature does not verify"
    return f"{type(exc).__name__}"
