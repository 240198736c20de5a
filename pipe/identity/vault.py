"""Vault / OpenBao: JWT login with the step token, read the secret, revoke the Vault token.

``POST /v1/auth/<mount>/login {"role", "jwt"}`` → ``auth.client_token``; ``GET /v1/<path>``
(KV v2: ``data.data``); ``POST /v1/auth/token/revoke-self`` when the credential is closed (and at
exit at the latest), whatever the outcome of the run. hvac is imported only here.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from pipe.credentials import Credential, check_fetched
from pipe.deadlines import call_within
from pipe.errors import IdentityError
from pipe.identity import references, retry
from pipe.identity.oidc_token import StepToken
from pipe.identity.settings import Settings, VaultSettings
from pipe.secret import Secret, mask

log = logging.getLogger("pipe.identity")
REVOKE_TIMEOUT = 5.0


def obtain(settings: Settings, token: StepToken) -> Credential:
    vault, ref = settings.vault, settings.ref
    assert vault is not None and ref is not None
    vault_token = _login(vault, token)
    revoke = _Revoker(vault, vault_token)
    try:
        data = _read(vault, vault_token, ref.path)
        where = f"The Vault secret {ref.path} at {vault.addr}"
        value = references.pick_field(ref, data, where)
        check_fetched(settings.kind, value, f"{where} field {ref.field!r}")
    except BaseException:
        revoke()
        raise
    credential = Credential(
        kind=settings.kind,
        value=value,
        source=f"{settings.variable}={ref} (Vault role '{vault.role}' at {vault.addr}, via the step's OIDC token)",
    )
    credential.on_close(revoke)
    return credential


def _client(vault: VaultSettings, timeout: float, token: Secret | None = None) -> Any:
    import hvac

    # token="" keeps hvac from picking up VAULT_TOKEN or ~/.vault-token from the machine. hvac follows
    # redirects by default, sending X-Vault-Token (and the step token, on login) wherever a 3xx points.
    return hvac.Client(
        url=vault.addr,
        token=token.reveal() if token else "",
        namespace=vault.namespace,
        timeout=timeout,
        allow_redirects=False,
        session=retry.session(),
    )


def _login(vault: VaultSettings, token: StepToken) -> Secret:
    hop = f"Vault JWT login at {vault.login_url}"

    def attempt(timeout: float) -> Any:
        client = _client(vault, timeout)
        return client.auth.jwt.jwt_login(
            role=vault.role, jwt=token.value.reveal(), use_token=False, path=vault.auth_path
        )

    response = retry.hop(
        hop,
        attempt,
        _transient,
        reason=_reason,
        unreachable="check that VAULT_ADDR is reachable from Bitbucket Pipelines and Vault is unsealed",
        fix=lambda exc: _login_fix(vault, token, _reason(exc)),
        refused="refused the step token",
    )
    try:
        return Secret(response["auth"]["client_token"])
    except (KeyError, TypeError):
        raise IdentityError(
            f"{hop} answered without auth.client_token", "check that VAULT_AUTH_PATH names a JWT auth mount"
        ) from None


def _login_fix(vault: VaultSettings, token: StepToken, reason: str) -> str:
    text = reason.lower()
    claims = f"this token: {token.summary()}"
    if "expired" in text or token.expired():
        return f"the step token has expired{token.expiry_note()}; tokens are issued when the step starts"
    if "audience" in text or "aud" in text.split():
        return f"add the token's aud {', '.join(token.audiences) or '?'!r} to bound_audiences of role '{vault.role}' ({claims})"
    if "bound claim" in text or "claim" in text:
        return (
            f"role '{vault.role}' bound_claims must match this repository, e.g. repositoryUuid = {token.repository_uuid!r} "
            f"({claims})"
        )
    if "role" in text and ("not found" in text or "could not be found" in text):
        return f"create role '{vault.role}' at auth/{vault.auth_path}/role/{vault.role}, or fix VAULT_ROLE"
    if "issuer" in text or "signature" in text or "verify" in text or "key" in text:
        return (
            f"configure auth/{vault.auth_path}/config with bound_issuer={token.issuer!r} and "
            f"oidc_discovery_url={token.issuer!r} (or jwt_validation_pubkeys) ({claims})"
        )
    if "permission denied" in text or "namespace" in text:
        return f"check VAULT_NAMESPACE and that a JWT auth method is enabled at '{vault.auth_path}' ({claims})"
    return f"check role '{vault.role}' of the JWT auth method at '{vault.auth_path}' ({claims})"


def _read(vault: VaultSettings, vault_token: Secret, path: str) -> dict[str, Any]:
    hop = f"Vault read of {vault.addr}/v1/{path}"

    def attempt(timeout: float) -> Any:
        return _client(vault, timeout, vault_token).adapter.get(f"/v1/{path}")

    response = retry.hop(
        hop,
        attempt,
        _transient,
        reason=_reason,
        unreachable="retry the step; check Vault's health",
        fix=lambda exc: _read_fix(exc, path),
    )
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict):
        raise IdentityError(
            f"{hop} returned no data", "check the path; KV v2 paths include data/, e.g. secret/data/prefect/ci"
        )
    inner = data.get("data")
    if isinstance(inner, dict) and isinstance(data.get("metadata"), dict):  # KV v2
        return inner
    return data


def _read_fix(exc: Exception, path: str) -> str:
    status = _status(exc)
    if status == 404:
        hint = "" if "/data/" in f"/{path}" else " (KV v2 paths include data/, e.g. secret/data/prefect/ci)"
        return f"create the secret at {path}, or fix the path in the reference{hint}"
    if status == 403:
        fix = f'the role\'s token_policies must allow it: path "{path}" {{ capabilities = ["read"] }}'
        return fix + (
            "" if "/data/" in f"/{path}" else "; and if this is a KV v2 mount, the path needs data/ (secret/data/...)"
        )
    return "check the path and the role's policies"


def _transient(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    status = _status(exc)
    return status is not None and (status == 429 or status >= 500)


def _status(exc: BaseException) -> int | None:
    from hvac import exceptions

    codes = {
        exceptions.InvalidRequest: 400,
        exceptions.Unauthorized: 401,
        exceptions.Forbidden: 403,
        exceptions.InvalidPath: 404,
        exceptions.RateLimitExceeded: 429,
        exceptions.InternalServerError: 500,
        exceptions.VaultNotInitialized: 501,
        exceptions.BadGateway: 502,
        exceptions.VaultDown: 503,
    }
    for cls, code in codes.items():
        if isinstance(exc, cls):
            return code
    if isinstance(exc, exceptions.UnexpectedError):
        return 500
    return None


def _reason(exc: BaseException) -> str:
    """The server's words (hvac's ``errors``), or the exception's class for network failures."""
    errors = getattr(exc, "errors", None)
    if errors:
        text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
    elif _status(exc) == 404:
        text = "not found (404)"
    elif _status(exc) is not None:
        text = f"HTTP {_status(exc)}"
    else:
        text = type(exc).__name__
    text = " ".join(text.replace("1 error occurred:", "").replace("*", "").split())
    return mask(text)[:300]


class _Revoker:
    """Revokes the Vault token once: from ``Credential.close``, or at interpreter exit."""

    def __init__(self, vault: VaultSettings, vault_token: Secret) -> None:
        self._vault = vault
        self._token = vault_token
        self._lock = threading.Lock()
        self._done = False
        atexit.register(self)

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        atexit.unregister(self)
        try:
            # At exit or on a stop too: a Vault that trickles its answer must not hold the process.
            call_within(
                REVOKE_TIMEOUT + 1.0,
                lambda: _client(self._vault, REVOKE_TIMEOUT, self._token).auth.token.revoke_self(),
                "Vault token revocation",
            )
            log.debug("Vault token revoked")
        except Exception as exc:
            log.warning("Could not revoke the Vault token (%s); it expires with its TTL", _reason(exc))
