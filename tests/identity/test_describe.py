"""DRY_RUN's identity picture: the token's claims (never the token) and a least-privilege trust snippet."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipe.errors import ConfigError
from tests.identity.calls import describe
from tests.identity.conftest import expect
from tests.identity.issuer import AUDIENCE, ISSUER, REPO_UUID, STEP_UUID, Issuer
from tests.support.pipe import BITBUCKET_ENV

PROVIDER_PATH = ISSUER.removeprefix("https://")
ENV_UUID = "{e0e0e0e0-0000-4000-8000-0000000000e1}"


def aws(token: str | None, **extra: Any) -> dict[str, Any]:
    variables = {
        "PREFECT_API_KEY_SECRET": "aws-sm:prefect/ci#api_key",
        "AWS_OIDC_ROLE_ARN": "arn:aws:iam::123456789012:role/prefect-ci",
        "AWS_DEFAULT_REGION": "eu-west-1",
        **extra,
    }
    if token:
        variables["BITBUCKET_STEP_OIDC_TOKEN"] = token
    return variables


def json_block(lines: list[str]) -> Any:
    """The pretty-printed JSON object inside the description (first '{' line to its closing '}')."""
    start = next(i for i, line in enumerate(lines) if line.strip() == "{")
    end = next(i for i in range(start, len(lines)) if lines[i] == lines[start].replace("{", "}"))
    return json.loads("\n".join(lines[start : end + 1]))


def test_aws_shows_claims_and_a_pasteable_trust_statement(issuer: Issuer) -> None:
    token = issuer.token()
    lines = describe(aws(token), BITBUCKET_ENV)
    text = "\n".join(lines)
    assert token not in text
    assert lines[0].startswith("Prefect credential: PREFECT_API_KEY_SECRET via AWS STS AssumeRoleWithWebIdentity")
    claims = lines[1]
    for shown in (
        f"iss={ISSUER}",
        f"aud={AUDIENCE}",
        f"sub={REPO_UUID}:{STEP_UUID}",
        f"repositoryUuid={REPO_UUID}",
        "branchName=main",
        "exp=",
    ):
        assert shown in claims
    assert "(in 60 min)" in claims or "(in 59 min)" in claims
    statement = json_block(lines)
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{PROVIDER_PATH}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {f"{PROVIDER_PATH}:aud": AUDIENCE},
            "StringLike": {f"{PROVIDER_PATH}:sub": f"{REPO_UUID}:*"},
        },
    }
    assert not any(line.startswith("WARNING:") for line in lines)


def test_aws_with_deployment_environment_pins_it_in_sub(issuer: Issuer) -> None:
    token = issuer.token(deploymentEnvironmentUuid=ENV_UUID, sub=f"{REPO_UUID}:{ENV_UUID}:{STEP_UUID}")
    lines = describe(aws(token), BITBUCKET_ENV)
    assert f"deploymentEnvironmentUuid={ENV_UUID}" in lines[1]
    assert json_block(lines)["Condition"]["StringLike"] == {f"{PROVIDER_PATH}:sub": f"{REPO_UUID}:{ENV_UUID}:*"}


def test_vault_role_bound_claims(issuer: Issuer) -> None:
    variables = {
        "PREFECT_API_AUTH_STRING_SECRET": "vault:secret/data/prefect/ci#auth_string",
        "VAULT_ADDR": "https://vault.example.com",
        "VAULT_ROLE": "prefect-ci",
        "BITBUCKET_STEP_OIDC_TOKEN": issuer.token(),
    }
    lines = describe(variables, BITBUCKET_ENV)
    text = "\n".join(lines)
    assert "Vault JWT login at https://vault.example.com/v1/auth/jwt/login (role 'prefect-ci')" in lines[0]
    role = json_block(lines)
    assert role["bound_audiences"] == [AUDIENCE]
    assert role["bound_claims"] == {"repositoryUuid": REPO_UUID, "branchName": "main"}
    assert role["user_claim"] == "sub" and role["token_policies"] == ["prefect-ci-read"]
    assert 'path "secret/data/prefect/ci" { capabilities = ["read"] }' in text
    assert f"bound_issuer='{ISSUER}'" in text


def test_gcp_attribute_condition(issuer: Issuer) -> None:
    variables = {
        "PREFECT_API_KEY_SECRET": "gcp-sm:projects/my-proj/secrets/prefect#api_key",
        "GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/42/locations/global/workloadIdentityPools/bitbucket/providers/acme",
        "GCP_SERVICE_ACCOUNT": "reader@my-proj.iam.gserviceaccount.com",
        "BITBUCKET_STEP_OIDC_TOKEN": issuer.token(),
    }
    text = "\n".join(describe(variables, BITBUCKET_ENV))
    assert (
        f"--attribute-condition=\"assertion.repositoryUuid == '{REPO_UUID}' && assertion.branchName == 'main'\"" in text
    )
    assert f"--allowed-audiences='{AUDIENCE}'" in text
    assert f"--issuer-uri='{ISSUER}'" in text
    assert (
        f"principalSet://iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/bitbucket/attribute.repository_uuid/{REPO_UUID}"
        in text
    )
    assert (
        "gcloud secrets add-iam-policy-binding prefect --project=my-proj --role=roles/secretmanager.secretAccessor --member='serviceAccount:reader@my-proj.iam.gserviceaccount.com'"
        in text
    )


def test_token_exchange_policy(issuer: Issuer) -> None:
    variables = {"TOKEN_EXCHANGE_URL": "https://idp.example.com/token", "BITBUCKET_STEP_OIDC_TOKEN": issuer.token()}
    text = "\n".join(describe(variables, BITBUCKET_ENV))
    assert "RFC 8693 token exchange at https://idp.example.com/token" in text
    assert f"repositoryUuid = {REPO_UUID}" in text and f"iss = {ISSUER}" in text


@pytest.mark.parametrize("provider", ["aws", "vault", "exchange"])
def test_warns_when_the_token_cannot_pin_the_repository(issuer: Issuer, provider: str) -> None:
    token = issuer.token(repositoryUuid=None, sub=STEP_UUID)
    variables = {
        "aws": aws(token),
        "vault": {
            "PREFECT_API_KEY_SECRET": "vault:secret/data/p#k",
            "VAULT_ADDR": "https://v.example.com",
            "VAULT_ROLE": "r",
            "BITBUCKET_STEP_OIDC_TOKEN": token,
        },
        "exchange": {"TOKEN_EXCHANGE_URL": "https://idp.example.com/token", "BITBUCKET_STEP_OIDC_TOKEN": token},
    }[provider]
    warnings = [line for line in describe(variables, BITBUCKET_ENV) if line.startswith("WARNING:")]
    assert len(warnings) == 1
    assert "would accept every repository" in warnings[0]


def test_warns_for_aws_when_sub_does_not_start_with_the_repository(issuer: Issuer) -> None:
    lines = describe(aws(issuer.token(sub="something-else")), BITBUCKET_ENV)
    assert any(line.startswith("WARNING:") and "AWS sub condition cannot pin this repository" in line for line in lines)


def test_without_a_token_says_add_oidc_true_and_uses_placeholders() -> None:
    lines = describe(aws(None), BITBUCKET_ENV)
    warning = next(line for line in lines if line.startswith("WARNING:"))
    assert "add `oidc: true` to the step" in warning and "every repository" in warning
    assert json_block(lines)["Condition"]["StringLike"] == {
        "api.bitbucket.org/2.0/workspaces/<workspace>/pipelines-config/identity/oidc:sub": "{repository-uuid}:*"
    }


def test_malformed_token_is_a_warning_not_a_crash() -> None:
    lines = describe(aws("not-a-jwt"), BITBUCKET_ENV)
    assert any("is not a JSON Web Token" in line for line in lines)


def test_not_configured_shows_only_claims_if_any(issuer: Issuer) -> None:
    assert describe({}, {}) == []
    token = issuer.token()
    lines = describe({}, {"BITBUCKET_STEP_OIDC_TOKEN": token})
    assert len(lines) == 1 and f"repositoryUuid={REPO_UUID}" in lines[0] and token not in lines[0]


def test_invalid_configuration_raises_config_error() -> None:
    error = expect(ConfigError, describe, {"PREFECT_API_KEY_SECRET": "aws-sm:prefect/ci"}, {})
    assert str(error).startswith("AWS_OIDC_ROLE_ARN is required")
