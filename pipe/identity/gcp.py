"""Google Cloud: Workload Identity Federation with the step token, then Secret Manager.

google-auth does the protocol from an ``external_account`` credential configuration, exactly as
``gcloud iam workload-identity-pools create-cred-config`` would write it: STS token exchange of the
subject token (read from a file), then — with ``GCP_SERVICE_ACCOUNT`` — service account
impersonation through ``generateAccessToken``. The secret is read with ``versions/<v>:access``
through google-auth's ``AuthorizedSession`` (no Secret Manager client library: it is heavy).

The subject token and the configuration live in a private directory (0700, files 0600) that is
removed when the credential is closed, or at exit. ``GOOGLE_APPLICATION_CREDENTIALS`` in
``cloud_env`` points at that configuration for a later ``ACTION=deploy`` subprocess.
Endpoints: ``GCP_STS_ENDPOINT``, ``GCP_IAM_CREDENTIALS_ENDPOINT``, ``GCP_SECRET_MANAGER_ENDPOINT``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pipe.credentials import Credential, check_fetched
from pipe.errors import IdentityError
from pipe.identity import references, retry
from pipe.identity.oidc_token import StepToken
from pipe.identity.private_files import PrivateDir
from pipe.identity.references import SecretRef
from pipe.identity.settings import GcpSettings, Settings
from pipe.secret import Secret, mask, register

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def credential_config(gcp: GcpSettings, token_file: str) -> dict[str, Any]:
    """The ``external_account`` configuration google-auth (and gcloud, and Terraform) understand."""
    info: dict[str, Any] = {
        "type": "external_account",
        "audience": gcp.audience,
        "subject_token_type": JWT_TOKEN_TYPE,
        "token_url": gcp.sts_url,
        "credential_source": {"file": token_file, "format": {"type": "text"}},
    }
    if gcp.service_account:
        info["service_account_impersonation_url"] = (
            f"{gcp.iam_credentials_url}/v1/projects/-/serviceAccounts/{gcp.service_account}:generateAccessToken"
        )
    return info


_GCP_UNREACHABLE = "rerun the step; check Google Cloud's status"


def obtain(settings: Settings, token: StepToken) -> Credential:
    gcp, ref = settings.gcp, settings.ref
    assert gcp is not None and ref is not None
    files = PrivateDir(prefix="prefect-trigger-gcp-")
    try:
        token_file = files.write("bitbucket-oidc-token", token.value.reveal())
        info = credential_config(gcp, str(token_file))
        config_file = files.write("credentials.json", json.dumps(info, indent=2))
        credentials = _federate(gcp, token, info)
        value = _access(gcp, ref, credentials)
        check_fetched(settings.kind, value, f"Google Secret Manager secret {ref.gcp_version_name}")
    except BaseException:
        files.remove()
        raise
    via = f"service account {gcp.service_account}" if gcp.service_account else "direct resource access"
    credential = Credential(
        kind=settings.kind,
        value=value,
        source=f"{settings.variable}={ref} (Google workload identity provider {gcp.provider} of pool {gcp.pool}, {via}, via the step's OIDC token)",
        cloud_env={
            "GOOGLE_APPLICATION_CREDENTIALS": Secret(str(config_file)),
            "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE": Secret(str(config_file)),
        },
    )
    credential.on_close(files.remove)
    return credential


def _request(limit: float) -> Any:
    """A google-auth transport with our timeout that remembers the last HTTP status (for retry decisions)."""
    from google.auth.transport.requests import Request

    class _Recording(Request):
        status: int | None = None

        def __call__(
            self,
            url: Any,
            method: Any = "GET",
            body: Any = None,
            headers: Any = None,
            timeout: Any = None,
            **kwargs: Any,
        ) -> Any:
            kwargs["allow_redirects"] = False  # google-auth would re-post the step token to any 3xx target
            response = super().__call__(url, method=method, body=body, headers=headers, timeout=limit, **kwargs)
            self.status = response.status
            if 300 <= response.status < 400:
                raise retry.Redirected(response.status, response.headers.get("Location"))
            return response

    return _Recording(retry.session())


def _federate(gcp: GcpSettings, token: StepToken, info: dict[str, Any]) -> Any:
    from google.auth import identity_pool

    credentials = identity_pool.Credentials.from_info(info, scopes=[CLOUD_PLATFORM])
    hop = f"Google STS token exchange at {gcp.sts_url}"
    if gcp.service_account:
        hop += f" and impersonation of {gcp.service_account}"
    last: dict[str, Any] = {}

    def attempt(timeout: float) -> None:
        request = last["request"] = _request(timeout)
        credentials.refresh(request)

    def transient(exc: BaseException) -> bool:
        return _transient(exc, getattr(last.get("request"), "status", None))

    retry.hop(
        hop,
        attempt,
        transient,
        reason=_reason,
        unreachable=_GCP_UNREACHABLE,
        fix=lambda exc: _federation_fix(gcp, token, exc),
        refused="refused the step token",
    )
    register(credentials.token)
    return credentials


def _federation_fix(gcp: GcpSettings, token: StepToken, exc: Exception) -> str:
    reason = _reason(exc).lower()
    claims = f"this token: {token.summary()}"
    aud = ", ".join(token.audiences) or "<aud>"
    if "expired" in reason or token.expired():
        return f"the step token has expired{token.expiry_note()}; tokens are issued when the step starts"
    if "impersonat" in reason or "iam.serviceaccounts" in reason or "permission" in reason:
        member = f"principalSet://iam.googleapis.com/projects/{gcp.project_number}/locations/global/workloadIdentityPools/{gcp.pool}/attribute.repository_uuid/{token.repository_uuid or '<repositoryUuid>'}"
        return f"grant roles/iam.workloadIdentityUser on {gcp.service_account} to {member} (with attribute.repository_uuid=assertion.repositoryUuid in the provider's mapping)"
    if "audience" in reason:
        return f"the provider's allowed audiences must include the token's aud '{aud}' (--allowed-audiences) ({claims})"
    if "attribute condition" in reason or "condition" in reason:
        return f"the provider's attribute condition must accept this repository, e.g. assertion.repositoryUuid == '{token.repository_uuid}' ({claims})"
    if "issuer" in reason or "signature" in reason or "key" in reason:
        return f"the provider's issuer must be '{token.issuer}' ({claims})"
    return f"check GCP_WORKLOAD_IDENTITY_PROVIDER ({gcp.audience}) and the provider's settings ({claims})"


def _access(gcp: GcpSettings, ref: SecretRef, credentials: Any) -> Secret:
    from google.auth.transport.requests import AuthorizedSession

    name = ref.gcp_version_name
    url = f"{gcp.secret_manager_url}/v1/{name}:access"
    hop = f"Google Secret Manager access of {name}"
    session = AuthorizedSession(
        credentials,
        refresh_timeout=retry.ATTEMPT_TIMEOUT,
        max_refresh_attempts=1,
        auth_request=_request(retry.ATTEMPT_TIMEOUT),
    )
    session.max_redirects = 0
    session.trust_env = False
    session.hooks["response"].append(retry.refuse_redirects)

    def attempt(timeout: float) -> Any:
        response = session.get(url, timeout=timeout, allow_redirects=False)
        if response.status_code != 200:
            raise _HttpError(response.status_code, _error_message(response.text))
        return response.json()

    try:
        body = retry.hop(
            hop,
            attempt,
            lambda exc: _transient(exc, getattr(exc, "status", None)),
            reason=_reason,
            unreachable=_GCP_UNREACHABLE,
            fix=lambda exc: _access_fix(gcp, ref, exc),
        )
    finally:
        session.close()
    try:
        raw = base64.b64decode(body["payload"]["data"], validate=True).decode("utf-8")
    except (KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise IdentityError(
            f"{hop} returned no readable payload", "store the Prefect credential as UTF-8 text"
        ) from None
    where = f"Google Secret Manager secret {name}"
    return references.pick(ref, raw, where)


def _access_fix(gcp: GcpSettings, ref: SecretRef, exc: Exception) -> str:
    status = getattr(exc, "status", None)
    secret = ref.gcp_version_name.split("/versions/")[0]
    if status == 404:
        return f"create the secret (with an enabled version) or fix the reference; the name is {secret}"
    if status in (401, 403):
        who = (
            f"serviceAccount:{gcp.service_account}"
            if gcp.service_account
            else f"principalSet://iam.googleapis.com/projects/{gcp.project_number}/locations/global/workloadIdentityPools/{gcp.pool}/attribute.repository_uuid/<repositoryUuid>"
        )
        return f"grant roles/secretmanager.secretAccessor on {secret} to {who}"
    return "check the secret and its permissions"


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


def _error_message(text: str) -> str:
    """Google's JSON error (``error.message`` or OAuth ``error_description``), never the raw body."""
    try:
        data = json.loads(text)
    except ValueError:
        return "no JSON error body"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return f"{error.get('status') or error.get('code') or ''} {error.get('message') or ''}".strip()
    if isinstance(error, str):
        return f"{error}: {data.get('error_description') or ''}".rstrip(": ")
    return "unrecognised error body"


def _transient(exc: BaseException, status: int | None) -> bool:
    import requests
    from google.auth import exceptions

    if isinstance(exc, exceptions.TransportError | requests.ConnectionError | requests.Timeout):
        return True
    if isinstance(exc, exceptions.GoogleAuthError) and exc.retryable:
        return True
    return status is not None and (status == 429 or status >= 500)


def _reason(exc: BaseException) -> str:
    from google.auth import exceptions

    if isinstance(exc, exceptions.TransportError):
        text = f"{type(exc).__name__} (network)"
    elif isinstance(exc, exceptions.GoogleAuthError):
        # OAuthError/RefreshError carry (summary, response body): take the server's message from the body.
        parts = [a for a in exc.args if isinstance(a, str)]
        body = next((a for a in parts[1:] if a.lstrip().startswith("{")), None)
        text = _error_message(body) if body else (parts[0] if parts else type(exc).__name__)
        if parts and body and not parts[0].startswith("Error code"):
            text = f"{parts[0]}: {text}"
    elif isinstance(exc, _HttpError):
        text = str(exc)
    else:
        text = type(exc).__name__
    return mask(" ".join(text.split()))[:300]
