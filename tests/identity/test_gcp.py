"""Google Cloud: google-auth's external_account flow against :class:`GcpStandIn` (STS, IAM Credentials,
Secret Manager), which checks the requests it receives and verifies the step token like STS does."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from pipe.errors import ConfigError, IdentityError
from tests.identity import leaks
from tests.identity.calls import obtain_credential
from tests.identity.conftest import PREFECT_API_KEY, PROVIDER, SECRET, SERVICE_ACCOUNT, expect
from tests.identity.issuer import AUDIENCE, OTHER_REPO_UUID, REPO_UUID, Issuer
from tests.identity.servers import GcpStandIn, GcpWorld, google_error
from tests.support.pipe import BITBUCKET_ENV
from tests.support.prefect_server import AUTH_STRING
from tests.support.standin import Answer


def paths(google: GcpStandIn) -> list[str]:
    return [f"{r.method} {r.path}" for r in google.received]


def test_impersonation_then_secret_access(google: GcpStandIn, gcp_variables: dict[str, Any], step_token: str) -> None:
    credential = obtain_credential(gcp_variables, BITBUCKET_ENV)
    assert credential.kind == "api_key" and credential.value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]
    assert f"gcp-sm:{SECRET}#api_key" in credential.source and SERVICE_ACCOUNT in credential.source
    assert paths(google) == [
        "POST /v1/token",
        f"POST /v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken",
        f"GET /v1/{SECRET}/versions/latest:access",
    ]
    sts_form = google.received[0].form()
    assert sts_form["subject_token"] == step_token
    assert sts_form["audience"] == f"//iam.googleapis.com/{PROVIDER}"
    # Secret Manager was called with the impersonated token, not the federated one.
    bearer = google.received[2].headers["authorization"].removeprefix("Bearer ")
    assert google.impersonated.get(bearer) == SERVICE_ACCOUNT

    # The private files: 0700 directory, 0600 files, the token only in its own file; gone after close.
    config_path = Path(credential.cloud_env["GOOGLE_APPLICATION_CREDENTIALS"].reveal())
    config = json.loads(config_path.read_text())
    assert config["type"] == "external_account" and config["token_url"] == f"{google.url}/v1/token"
    token_path = Path(config["credential_source"]["file"])
    assert token_path.read_text() == step_token and step_token not in config_path.read_text()
    assert stat.S_IMODE(config_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(token_path.stat().st_mode) == stat.S_IMODE(config_path.stat().st_mode) == 0o600
    credential.close()
    assert not config_path.parent.exists()


def test_direct_resource_access_without_service_account(google: GcpStandIn, gcp_variables: dict[str, Any]) -> None:
    del gcp_variables["GCP_SERVICE_ACCOUNT"]
    gcp_variables["PREFECT_API_KEY_SECRET"] = f"gcp-sm:{SECRET}/versions/3#api_key"
    credential = obtain_credential(gcp_variables, BITBUCKET_ENV)
    credential.close()
    assert credential.value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]
    assert paths(google) == ["POST /v1/token", f"GET /v1/{SECRET}/versions/3:access"]
    assert google.received[1].headers["authorization"].removeprefix("Bearer ") in google.federated


def test_auth_string_field(google: GcpStandIn, gcp_variables: dict[str, Any]) -> None:
    del gcp_variables["PREFECT_API_KEY_SECRET"]
    gcp_variables["PREFECT_API_AUTH_STRING_SECRET"] = f"gcp-sm:{SECRET}#auth_string"
    credential = obtain_credential(gcp_variables, BITBUCKET_ENV)
    credential.close()
    assert credential.kind == "auth_string" and credential.value.reveal() == AUTH_STRING  # type: ignore[union-attr]


def test_audience_not_allowed(
    google: GcpStandIn, world: GcpWorld, gcp_variables: dict[str, Any], pauses: list[float]
) -> None:
    world.allowed_audiences = ["https://iam.googleapis.com/" + PROVIDER]  # the provider's default audience only
    error = expect(IdentityError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    text = str(error)
    assert text.startswith(
        f"Google STS token exchange at {google.url}/v1/token and impersonation of {SERVICE_ACCOUNT} refused the step token"
    )
    assert "The audience in ID Token [...] does not match the expected audience" in text
    assert f"allowed audiences must include the token's aud '{AUDIENCE}'" in text
    assert pauses == [] and len(google.received) == 1


def test_other_repository_rejected_by_attribute_condition(gcp_variables: dict[str, Any], issuer: Issuer) -> None:
    gcp_variables["BITBUCKET_STEP_OIDC_TOKEN"] = issuer.token(repositoryUuid=OTHER_REPO_UUID)
    error = expect(IdentityError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    assert "rejected by the attribute condition" in str(error)
    assert f"assertion.repositoryUuid == '{OTHER_REPO_UUID}'" in str(error)


def test_expired_token(gcp_variables: dict[str, Any], issuer: Issuer) -> None:
    gcp_variables["BITBUCKET_STEP_OIDC_TOKEN"] = issuer.token(exp=1_700_000_000, iat=1_699_990_000)
    error = expect(IdentityError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    assert "invalid_grant" in str(error) or "stale" in str(error)
    assert "rerun the step" in str(error)


def test_impersonation_denied(world: GcpWorld, gcp_variables: dict[str, Any]) -> None:
    world.sa_grantees = set()
    error = expect(IdentityError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    text = str(error)
    assert "iam.serviceAccounts.getAccessToken" in text
    assert f"roles/iam.workloadIdentityUser on {SERVICE_ACCOUNT}" in text
    assert f"attribute.repository_uuid/{REPO_UUID}" in text


def test_secret_missing(world: GcpWorld, gcp_variables: dict[str, Any]) -> None:
    gcp_variables["PREFECT_API_KEY_SECRET"] = "gcp-sm:projects/my-proj/secrets/absent"
    error = expect(IdentityError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    assert str(error).startswith(
        "Google Secret Manager access of projects/my-proj/secrets/absent/versions/latest failed: HTTP 404"
    )
    assert "not found or has no versions" in str(error)


def test_secret_access_denied(
    world: GcpWorld, gcp_variables: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    world.accessors = set()
    error = expect(IdentityError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    assert "PERMISSION_DENIED" in str(error)
    assert f"roles/secretmanager.secretAccessor on {SECRET} to serviceAccount:{SERVICE_ACCOUNT}" in str(error)
    assert list(tmp_path.iterdir()) == [], "the token file must be removed when the exchange fails"


def test_sts_unavailable_is_retried(google: GcpStandIn, gcp_variables: dict[str, Any], pauses: list[float]) -> None:
    google.queued.append(Answer(503, json.dumps({"error": "temporarily_unavailable"})))
    google.queued.append(google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"))
    credential = obtain_credential(gcp_variables, BITBUCKET_ENV)
    credential.close()
    assert len(pauses) == 2
    assert credential.value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]


def test_secret_manager_5xx_gives_up(
    google: GcpStandIn, world: GcpWorld, gcp_variables: dict[str, Any], pauses: list[float]
) -> None:
    original = google.answer

    def answer(request: Any) -> Answer:
        if request.path.endswith(":access"):
            return google_error(500, "INTERNAL", "Internal error encountered.")
        return original(request)

    google.answer = answer  # type: ignore[method-assign]
    error = expect(IdentityError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    assert "failed 3 times: HTTP 500" in str(error)
    assert len(pauses) == 2


def test_credentials_config_is_what_gcloud_writes(gcp_variables: dict[str, Any]) -> None:
    from pipe.identity import gcp, settings

    config = gcp.credential_config(settings.load(gcp_variables, BITBUCKET_ENV).gcp, "/tmp/token")  # type: ignore[arg-type]
    assert config == {
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{PROVIDER}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": gcp_variables["GCP_STS_ENDPOINT"],
        "credential_source": {"file": "/tmp/token", "format": {"type": "text"}},
        "service_account_impersonation_url": f"{gcp_variables['GCP_IAM_CREDENTIALS_ENDPOINT']}/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"GCP_WORKLOAD_IDENTITY_PROVIDER": None}, "GCP_WORKLOAD_IDENTITY_PROVIDER is required"),
        (
            {
                "GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/my-proj/locations/global/workloadIdentityPools/p1/providers/q1"
            },
            "GCP_WORKLOAD_IDENTITY_PROVIDER",
        ),
        ({"GCP_SERVICE_ACCOUNT": "not an email"}, "GCP_SERVICE_ACCOUNT 'not an email' is not a service account e-mail"),
        ({"GCP_STS_ENDPOINT": "http://sts.example.com/v1/token"}, "GCP_STS_ENDPOINT uses plain http://"),
        (
            {"PREFECT_API_KEY_SECRET": "gcp-sm:my-proj/prefect"},
            "PREFECT_API_KEY_SECRET has a malformed gcp-sm reference",
        ),
    ],
)
def test_configuration_errors(gcp_variables: dict[str, Any], change: dict[str, Any], message: str) -> None:
    for name, value in change.items():
        if value is None:
            gcp_variables.pop(name)
        else:
            gcp_variables[name] = value
    error = expect(ConfigError, obtain_credential, gcp_variables, BITBUCKET_ENV)
    assert str(error).startswith(message)


def test_default_endpoints_are_googles(step_token: str) -> None:
    from pipe.identity import settings

    loaded = settings.load(
        {
            "PREFECT_API_KEY_SECRET": f"gcp-sm:{SECRET}",
            "GCP_WORKLOAD_IDENTITY_PROVIDER": "//iam.googleapis.com/" + PROVIDER,
        },
        {},
    ).gcp
    assert loaded is not None
    assert (loaded.sts_url, loaded.iam_credentials_url, loaded.secret_manager_url) == (
        "https://sts.googleapis.com/v1/token",
        "https://iamcredentials.googleapis.com",
        "https://secretmanager.googleapis.com",
    )
    leaks.remember(step_token)
