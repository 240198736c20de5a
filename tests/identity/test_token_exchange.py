"""RFC 8693 token exchange against :class:`TokenExchangeStandIn`, which verifies what it is sent."""

from __future__ import annotations

import json
from typing import Any

from pipe.errors import ConfigError, IdentityError
from tests.identity.calls import obtain_credential
from tests.identity.conftest import CLIENT_ID, EXCHANGE_AUDIENCE, expect
from tests.identity.issuer import OTHER_REPO_UUID, Issuer
from tests.identity.servers import TokenExchangeStandIn
from tests.support.pipe import BITBUCKET_ENV
from tests.support.standin import Answer


def test_exchange_returns_a_bearer_credential(
    idp: TokenExchangeStandIn, exchange_variables: dict[str, Any], step_token: str
) -> None:
    credential = obtain_credential(exchange_variables, BITBUCKET_ENV)
    assert credential.kind == "api_key"
    assert credential.value is not None and credential.value.reveal() == idp.issued[0]
    assert credential.source.startswith(f"TOKEN_EXCHANGE_URL={idp.url}/oauth2/token (RFC 8693")
    form = idp.received[0].form()
    assert form == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": step_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "audience": EXCHANGE_AUDIENCE,
        "scope": "prefect:run prefect:read",
        "client_id": CLIENT_ID,
    }
    assert idp.received[0].headers["content-type"] == "application/x-www-form-urlencoded"


def test_wrong_audience_is_invalid_target(exchange_variables: dict[str, Any], pauses: list[float]) -> None:
    exchange_variables["TOKEN_EXCHANGE_AUDIENCE"] = "somebody-else"
    error = expect(IdentityError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert "refused the step token: HTTP 400 invalid_target: Audience somebody-else not found" in str(error)
    assert "TOKEN_EXCHANGE_AUDIENCE (somebody-else) must name a target" in str(error)
    assert pauses == []


def test_unknown_client(exchange_variables: dict[str, Any]) -> None:
    exchange_variables["TOKEN_EXCHANGE_CLIENT_ID"] = "nobody"
    error = expect(IdentityError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert "HTTP 401 invalid_client" in str(error) and "TOKEN_EXCHANGE_CLIENT_ID" in str(error)


def test_other_repository_is_denied_quoting_claims(exchange_variables: dict[str, Any], issuer: Issuer) -> None:
    exchange_variables["BITBUCKET_STEP_OIDC_TOKEN"] = issuer.token(repositoryUuid=OTHER_REPO_UUID)
    error = expect(IdentityError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert "HTTP 403 access_denied" in str(error)
    assert f"repositoryUuid={OTHER_REPO_UUID}" in str(error)


def test_forged_token_is_invalid_grant(exchange_variables: dict[str, Any]) -> None:
    exchange_variables["BITBUCKET_STEP_OIDC_TOKEN"] = Issuer().token()
    error = expect(IdentityError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert "invalid_grant: Invalid token (InvalidSignatureError)" in str(error)


def test_server_errors_are_retried(
    idp: TokenExchangeStandIn, exchange_variables: dict[str, Any], pauses: list[float]
) -> None:
    idp.queued += [Answer(503, "<html>busy</html>", "text/html"), Answer(429, json.dumps({"error": "slow_down"}))]
    credential = obtain_credential(exchange_variables, BITBUCKET_ENV)
    assert len(idp.received) == 3 and len(pauses) == 2
    assert credential.value is not None and credential.value.reveal() == idp.issued[0]


def test_answer_without_access_token(idp: TokenExchangeStandIn, exchange_variables: dict[str, Any]) -> None:
    idp.queued.append(Answer(200, json.dumps({"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})))
    error = expect(IdentityError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert "answered without an access_token" in str(error)


def test_non_bearer_token_type_is_refused(idp: TokenExchangeStandIn, exchange_variables: dict[str, Any]) -> None:
    idp.queued.append(Answer(200, json.dumps({"access_token": "abcdefgh-dpop-bound", "token_type": "DPoP"})))
    error = expect(IdentityError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert "issued a 'DPoP' token" in str(error)


def test_exchange_options_without_url_are_a_config_error() -> None:
    variables = {"PREFECT_API_KEY_SECRET": "aws-sm:x", "TOKEN_EXCHANGE_AUDIENCE": "prefect-api"}
    error = expect(ConfigError, obtain_credential, variables, BITBUCKET_ENV)
    assert str(error).startswith("TOKEN_EXCHANGE_AUDIENCE is set but TOKEN_EXCHANGE_URL is not")


def test_exchange_and_secret_reference_together_are_a_config_error(exchange_variables: dict[str, Any]) -> None:
    exchange_variables["PREFECT_API_KEY_SECRET"] = "vault:secret/data/prefect/ci#api_key"
    error = expect(ConfigError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert "PREFECT_API_KEY_SECRET and TOKEN_EXCHANGE_URL are both set" in str(error)


def test_plain_http_to_a_remote_idp_is_refused(exchange_variables: dict[str, Any]) -> None:
    exchange_variables["TOKEN_EXCHANGE_URL"] = "http://idp.example.com/token"
    error = expect(ConfigError, obtain_credential, exchange_variables, BITBUCKET_ENV)
    assert str(error).startswith("TOKEN_EXCHANGE_URL uses plain http://")
