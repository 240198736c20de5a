"""No identity hop follows a redirect: the step token, the Vault token and the fetched credential go to
the configured address and nowhere else, and a redirect ends the hop in one line that says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipe.errors import IdentityError
from tests.identity.calls import obtain_credential
from tests.identity.conftest import expect
from tests.identity.issuer import Issuer
from tests.support.pipe import BITBUCKET_ENV
from tests.support.standin import Answer, Received, StandIn, json_answer

VAULT_TOKEN = "hvs.vault-token-that-must-stay-home"


class Elsewhere(StandIn):
    """The other host a redirect points at: it must never hear from the pipe."""

    def answer(self, request: Received) -> Answer:
        return json_answer(200, {})


class Redirecting(StandIn):
    """Answers the paths in ``redirect`` with 307 to the same path on ``target``; ``answers`` for the rest."""

    def __init__(self, target: str, redirect: tuple[str, ...], answers: dict[str, Answer] | None = None) -> None:
        self.target, self.redirect, self.answers = target, redirect, answers or {}
        super().__init__()

    def answer(self, request: Received) -> Answer:
        path = request.path.split("?")[0]
        if any(path.startswith(prefix) for prefix in self.redirect):
            return Answer(307, "", headers={"Location": f"{self.target}{request.path}"})
        return self.answers.get(path, json_answer(404, {"errors": ["no such path"]}))


@pytest.fixture()
def elsewhere() -> Iterator[Elsewhere]:
    with Elsewhere() as server:
        yield server


def vault(addr: str, token: str) -> dict[str, Any]:
    return {
        "PREFECT_API_KEY_SECRET": "vault:secret/data/prefect/ci#api_key",
        "VAULT_ADDR": addr,
        "VAULT_ROLE": "prefect-ci",
        "BITBUCKET_STEP_OIDC_TOKEN": token,
    }


@pytest.mark.parametrize(
    "redirected",
    [("/v1/auth/jwt/login",), ("/v1/secret/",), ("/v1/secret/", "/v1/auth/token/revoke-self")],
    ids=["login", "secret-read", "read-and-revoke"],
)
def test_vault_redirects_are_not_followed(issuer: Issuer, elsewhere: Elsewhere, redirected: tuple[str, ...]) -> None:
    login = json_answer(200, {"auth": {"client_token": VAULT_TOKEN, "accessor": "a", "lease_duration": 60}})
    with Redirecting(elsewhere.url, redirected, {"/v1/auth/jwt/login": login}) as vault_server:
        error = expect(IdentityError, obtain_credential, vault(vault_server.url, issuer.token()), BITBUCKET_ENV)

    assert elsewhere.received == [], "a redirect was followed"
    assert "was answered with a redirect (HTTP 307 to http://127.0.0.1:" in str(error)
    assert "never sent on to another address" in str(error)
    if redirected != ("/v1/auth/jwt/login",):  # logged in: the token was revoked at home, not elsewhere
        assert any(r.path == "/v1/auth/token/revoke-self" for r in vault_server.received)


def test_token_exchange_redirects_are_not_followed(issuer: Issuer, elsewhere: Elsewhere) -> None:
    with Redirecting(elsewhere.url, ("/",)) as idp:
        variables = {"TOKEN_EXCHANGE_URL": f"{idp.url}/oauth2/token", "BITBUCKET_STEP_OIDC_TOKEN": issuer.token()}
        error = expect(IdentityError, obtain_credential, variables, BITBUCKET_ENV)
    assert elsewhere.received == []
    assert "was answered with a redirect (HTTP 307" in str(error)


@pytest.mark.parametrize("redirected", ["/v1/token", "/v1/projects/"], ids=["sts", "impersonation"])
def test_google_redirects_are_not_followed(issuer: Issuer, elsewhere: Elsewhere, redirected: str) -> None:
    sts = json_answer(200, {"access_token": "ya29.federated", "token_type": "Bearer", "expires_in": 3600})
    with Redirecting(elsewhere.url, (redirected,), {"/v1/token": sts}) as google:
        variables = {
            "PREFECT_API_KEY_SECRET": "gcp-sm:projects/123/secrets/prefect#api_key",
            "GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/123/locations/global/workloadIdentityPools/bitbucket/providers/acme",
            "GCP_SERVICE_ACCOUNT": "ci@project.iam.gserviceaccount.com",
            "GCP_STS_ENDPOINT": f"{google.url}/v1/token",
            "GCP_IAM_CREDENTIALS_ENDPOINT": google.url,
            "GCP_SECRET_MANAGER_ENDPOINT": google.url,
            "BITBUCKET_STEP_OIDC_TOKEN": issuer.token(),
        }
        error = expect(IdentityError, obtain_credential, variables, BITBUCKET_ENV)
    assert elsewhere.received == []
    assert "was answered with a redirect (HTTP 307" in str(error)
