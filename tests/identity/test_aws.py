"""AWS: moto serves STS, Secrets Manager and SSM; a stand-in STS answers with AWS's real error documents.

moto accepts any web identity token, so it shows the happy paths (the request shapes boto3 sends and the
reads with the temporary credentials); the refusals come from :class:`StsStandIn`, which verifies the
token's signature and audience like STS does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipe.errors import ConfigError, IdentityError
from tests.identity import leaks
from tests.identity.calls import obtain_credential
from tests.identity.conftest import PREFECT_API_KEY, ROLE_ARN, expect
from tests.identity.issuer import AUDIENCE, ISSUER, REPO_UUID, Issuer
from tests.identity.servers import (
    ACCESS_DENIED,
    IDP_COMMUNICATION_ERROR,
    INVALID_IDENTITY_TOKEN,
    THROTTLING,
    Moto,
    StsStandIn,
    sts_error,
)
from tests.support.pipe import BITBUCKET_ENV
from tests.support.prefect_server import AUTH_STRING


@pytest.fixture()
def sts(issuer: Issuer) -> Iterator[StsStandIn]:
    server = StsStandIn(verify=issuer.verify)
    yield server
    server.stop()


def env_for(moto: Moto, sts: StsStandIn | None = None) -> dict[str, str]:
    env = {**BITBUCKET_ENV, "AWS_ENDPOINT_URL": moto.url}
    if sts:
        env["AWS_ENDPOINT_URL_STS"] = sts.url
    return env


def remember_cloud_env(credential: Any) -> None:
    leaks.remember(*(value.reveal() for value in credential.cloud_env.values()))


def test_secrets_manager_json_field(moto: Moto, aws_variables: dict[str, Any]) -> None:
    credential = obtain_credential(aws_variables, env_for(moto))
    remember_cloud_env(credential)
    assert credential.kind == "api_key"
    assert credential.value is not None and credential.value.reveal() == PREFECT_API_KEY
    assert "aws-sm:prefect/ci#api_key" in credential.source and ROLE_ARN in credential.source
    assert set(credential.cloud_env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert credential.cloud_env["AWS_ACCESS_KEY_ID"].reveal().startswith("ASIA")  # temporary keys from STS
    credential.close()


def test_secrets_manager_whole_value_and_auth_string_field(moto: Moto, aws_variables: dict[str, Any]) -> None:
    aws_variables["PREFECT_API_KEY_SECRET"] = "aws-sm:prefect/plain-key"
    assert obtain_credential(aws_variables, env_for(moto)).value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]
    del aws_variables["PREFECT_API_KEY_SECRET"]
    aws_variables["PREFECT_API_AUTH_STRING_SECRET"] = "aws-sm:prefect/ci#auth_string"
    credential = obtain_credential(aws_variables, env_for(moto))
    assert credential.kind == "auth_string" and credential.value.reveal() == AUTH_STRING  # type: ignore[union-attr]


def test_secrets_manager_by_arn_takes_the_arns_region(moto: Moto, aws_variables: dict[str, Any]) -> None:
    arn = moto.client("secretsmanager").describe_secret(SecretId="prefect/ci")["ARN"]
    aws_variables["PREFECT_API_KEY_SECRET"] = f"aws-sm:{arn}#api_key"
    del aws_variables["AWS_DEFAULT_REGION"]
    credential = obtain_credential(aws_variables, env_for(moto))
    assert credential.value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]


def test_ssm_parameter(moto: Moto, aws_variables: dict[str, Any]) -> None:
    aws_variables["PREFECT_API_KEY_SECRET"] = "aws-ssm:/prefect/ci/api-key"
    credential = obtain_credential(aws_variables, env_for(moto))
    remember_cloud_env(credential)
    assert credential.value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]
    assert "aws-ssm:/prefect/ci/api-key" in credential.source


def test_sts_request_carries_the_token_role_and_a_build_session_name(
    moto: Moto, sts: StsStandIn, aws_variables: dict[str, Any], step_token: str
) -> None:
    aws_variables["AWS_ROLE_DURATION_SECONDS"] = 900
    credential = obtain_credential(aws_variables, env_for(moto, sts))
    form = sts.received[0].form()
    assert form["WebIdentityToken"] == step_token
    assert form["RoleArn"] == ROLE_ARN
    assert form["RoleSessionName"] == "bitbucket-data-pipelines-42"  # repository and build, for CloudTrail
    assert form["DurationSeconds"] == "900"
    assert "authorization" not in sts.received[0].headers, "AssumeRoleWithWebIdentity must be unsigned"
    # The stand-in's credentials went on to sign the Secrets Manager read at moto.
    assert credential.cloud_env["AWS_ACCESS_KEY_ID"].reveal() == sts.issued[0]["AccessKeyId"]
    assert credential.value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]


def test_ambient_aws_keys_are_not_used(
    moto: Moto, sts: StsStandIn, aws_variables: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAMBIENT000000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret-key-should-not-be-used")
    credential = obtain_credential(aws_variables, env_for(moto, sts))
    assert credential.cloud_env["AWS_ACCESS_KEY_ID"].reveal() == sts.issued[0]["AccessKeyId"]


def test_invalid_identity_token_fails_at_once_naming_the_provider(
    moto: Moto, sts: StsStandIn, aws_variables: dict[str, Any], pauses: list[float]
) -> None:
    sts.queued.append(INVALID_IDENTITY_TOKEN)
    error = expect(IdentityError, obtain_credential, aws_variables, env_for(moto, sts))
    text = str(error)
    assert text.startswith(
        f"AWS STS AssumeRoleWithWebIdentity ({ROLE_ARN}) refused the step token: InvalidIdentityToken: No OpenIDConnect provider"
    )
    assert f"OIDC identity provider {ISSUER.removeprefix('https://')} in account {Moto.ACCOUNT}" in text
    assert f"audience '{AUDIENCE}'" in text
    assert len(sts.received) == 1 and pauses == []


def test_access_denied_quotes_the_trust_condition_and_the_claims(
    moto: Moto, sts: StsStandIn, aws_variables: dict[str, Any], pauses: list[float]
) -> None:
    sts.queued.append(ACCESS_DENIED)
    error = expect(IdentityError, obtain_credential, aws_variables, env_for(moto, sts))
    text = str(error)
    assert "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity" in text
    provider = ISSUER.removeprefix("https://")
    assert f"'{provider}:sub' like '{REPO_UUID}:*'" in text
    assert f"'{provider}:aud' = '{AUDIENCE}'" in text
    assert f"repositoryUuid={REPO_UUID}" in text and "branchName=main" in text  # this token's claims
    assert len(sts.received) == 1 and pauses == []


def test_token_from_another_issuer_is_rejected_by_the_stand_in(
    moto: Moto, sts: StsStandIn, aws_variables: dict[str, Any]
) -> None:
    aws_variables["BITBUCKET_STEP_OIDC_TOKEN"] = Issuer().token()  # signed by a key STS does not know
    error = expect(IdentityError, obtain_credential, aws_variables, env_for(moto, sts))
    assert "InvalidIdentityToken" in str(error)


def test_idp_communication_error_and_throttling_are_retried_then_succeed(
    moto: Moto, sts: StsStandIn, aws_variables: dict[str, Any], pauses: list[float]
) -> None:
    sts.queued += [IDP_COMMUNICATION_ERROR, THROTTLING]
    credential = obtain_credential(aws_variables, env_for(moto, sts))
    assert len(sts.received) == 3
    assert len(pauses) == 2 and pauses[0] < pauses[1] < 5  # backoff grows, stays bounded
    assert credential.value.reveal() == PREFECT_API_KEY  # type: ignore[union-attr]


def test_persistent_5xx_gives_up_after_three_tries(
    moto: Moto, sts: StsStandIn, aws_variables: dict[str, Any], pauses: list[float]
) -> None:
    sts.queued += [sts_error("InternalFailure", "internal", status=500, kind="Receiver")] * 3
    error = expect(IdentityError, obtain_credential, aws_variables, env_for(moto, sts))
    assert "failed 3 times: InternalFailure" in str(error)
    assert len(sts.received) == 3 and len(pauses) == 2


def test_missing_secret(moto: Moto, aws_variables: dict[str, Any]) -> None:
    aws_variables["PREFECT_API_KEY_SECRET"] = "aws-sm:prefect/does-not-exist"
    error = expect(IdentityError, obtain_credential, aws_variables, env_for(moto))
    text = str(error)
    assert text.startswith(
        "AWS Secrets Manager GetSecretValue (prefect/does-not-exist in eu-west-1) failed: ResourceNotFoundException"
    )
    assert "it is looked up in eu-west-1" in text


def test_missing_parameter(moto: Moto, aws_variables: dict[str, Any]) -> None:
    aws_variables["PREFECT_API_KEY_SECRET"] = "aws-ssm:/prefect/nothing"
    error = expect(IdentityError, obtain_credential, aws_variables, env_for(moto))
    assert "ParameterNotFound" in str(error)


def test_field_of_a_non_json_secret(moto: Moto, aws_variables: dict[str, Any]) -> None:
    aws_variables["PREFECT_API_KEY_SECRET"] = "aws-sm:prefect/plain-key#api_key"
    error = expect(IdentityError, obtain_credential, aws_variables, env_for(moto))
    assert "not JSON, so PREFECT_API_KEY_SECRET's #api_key cannot be taken" in str(error)


def test_unreachable_sts_is_retried_within_the_bound(aws_variables: dict[str, Any], pauses: list[float]) -> None:
    from tests.support.processes import free_port

    env = {**BITBUCKET_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    error = expect(IdentityError, obtain_credential, aws_variables, env)
    assert "failed 3 times: EndpointConnectionError" in str(error)
    assert len(pauses) == 2 and sum(pauses) < 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"AWS_OIDC_ROLE_ARN": None}, "AWS_OIDC_ROLE_ARN is required"),
        ({"AWS_OIDC_ROLE_ARN": "prefect-ci"}, "AWS_OIDC_ROLE_ARN 'prefect-ci' is not an IAM role ARN"),
        ({"AWS_DEFAULT_REGION": None}, "AWS_DEFAULT_REGION is required"),
        ({"AWS_DEFAULT_REGION": "Ireland"}, "AWS_DEFAULT_REGION 'Ireland' is not a region name"),
        ({"AWS_ROLE_SESSION_NAME": "has spaces in it"}, "AWS_ROLE_SESSION_NAME must be 2-64 characters"),
        ({"AWS_ROLE_DURATION_SECONDS": 60}, "AWS_ROLE_DURATION_SECONDS must be between 900 and 43200"),
    ],
)
def test_configuration_errors_name_the_variable(
    aws_variables: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    for name, value in change.items():
        if value is None:
            aws_variables.pop(name)
        else:
            aws_variables[name] = value
    error = expect(ConfigError, obtain_credential, aws_variables, BITBUCKET_ENV)
    assert str(error).startswith(message)


def test_plain_http_endpoint_to_a_remote_host_is_refused(aws_variables: dict[str, Any]) -> None:
    env = {**BITBUCKET_ENV, "AWS_ENDPOINT_URL_STS": "http://sts.example.com"}
    error = expect(ConfigError, obtain_credential, aws_variables, env)
    assert str(error).startswith("AWS_ENDPOINT_URL_STS uses plain http://")
