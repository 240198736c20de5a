"""RFC 8693 OAuth 2.0 Token Exchange of the step token at an identity provider or broker.

One form POST (``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``, ``subject_token``,
``subject_token_type=urn:ietf:params:oauth:token-type:jwt``, optional ``audience``, ``scope``,
``client_id``); the ``access_token`` of the answer is the Prefect credential, sent as a bearer token
(a self-hosted Prefect behind an identity-aware proxy, or a broker that returns Prefect keys).
"""

from __future__ import annotations

from typing import Any

from pipe.credentials import Credential
from pipe.errors import IdentityError
from pipe.identity import retry
from pipe.identity.oidc_token import StepToken
from pipe.identity.settings import ExchangeSettings, Settings
from pipe.secret import Secret, mask

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class _Refused(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        self.status, self.error, self.description = status, error, description
        super().__init__(f"HTTP {status} {error}")


def obtain(settings: Settings, token: StepToken) -> Credential:
    exchange = settings.exchange
    assert exchange is not None
    hop = f"RFC 8693 token exchange at {exchange.url}"
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": token.value.reveal(),
        "subject_token_type": JWT_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
    }
    for key, text in (("audience", exchange.audience), ("scope", exchange.scope), ("client_id", exchange.client_id)):
        if text:
            form[key] = text

    def attempt(timeout: float) -> dict[str, Any]:
        with retry.session() as client:
            response = client.post(
                exchange.url, data=form, headers={"Accept": "application/json"}, timeout=timeout, allow_redirects=False
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            description = body.get("error_description") if isinstance(body, dict) else None
            raise _Refused(response.status_code, str(error or "no OAuth error"), str(description or ""))
        if not isinstance(body, dict):
            raise _Refused(response.status_code, "invalid_response", "the answer is not a JSON object")
        return body

    body = retry.hop(
        hop,
        attempt,
        _transient,
        reason=_reason,
        unreachable="check that the identity provider is reachable from Bitbucket Pipelines",
        fix=lambda exc: _fix(exchange, token, exc),
        refused="refused the step token",
    )

    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise IdentityError(
            f"{hop} answered without an access_token", "check that the endpoint implements RFC 8693 token exchange"
        )
    value = Secret(access_token)
    token_type = str(body.get("token_type") or "")
    if token_type and token_type.lower() not in ("bearer", "n_a"):
        raise IdentityError(
            f"{hop} issued a {token_type!r} token, which cannot be sent as a bearer credential",
            "ask the identity provider for a Bearer access token",
        )
    return Credential(
        kind="api_key",
        value=value,
        source=f"TOKEN_EXCHANGE_URL={exchange.url} (RFC 8693 token exchange of the step's OIDC token)",
    )


def _fix(exchange: ExchangeSettings, token: StepToken, exc: Exception) -> str:
    error = getattr(exc, "error", "")
    claims = f"this token: {token.summary()}"
    if token.expired():
        return f"the step token has expired{token.expiry_note()}; tokens are issued when the step starts"
    if error == "invalid_client" or getattr(exc, "status", 0) == 401:
        return "check TOKEN_EXCHANGE_CLIENT_ID and that the client may use the token-exchange grant"
    if error == "invalid_target":
        return (
            f"TOKEN_EXCHANGE_AUDIENCE ({exchange.audience or 'not set'}) must name a target the identity provider knows"
        )
    if error == "invalid_scope":
        return f"TOKEN_EXCHANGE_SCOPE ({exchange.scope or 'not set'}) must list scopes the client may request"
    if error == "access_denied" and "gateway's policy" in getattr(exc, "description", ""):
        return (
            f"add a rule for this repository to the gateway's policy ({claims}); DRY_RUN: 'true' prints the rule this "
            "step needs"
        )
    if error in ("invalid_grant", "invalid_request", "unauthorized_client", "access_denied"):
        return f"the identity provider must trust issuer {token.issuer!r} and accept this repository ({claims})"
    return f"check the identity provider's token-exchange policy ({claims})"


def _transient(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    status = getattr(exc, "status", 0)
    return isinstance(exc, _Refused) and (status == 429 or status >= 500)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _Refused):
        text = f"HTTP {exc.status} {exc.error}" + (f": {exc.description}" if exc.description else "")
    else:
        text = type(exc).__name__
    return mask(" ".join(text.split()))[:300]
