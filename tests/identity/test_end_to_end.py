"""End to end: ``python -m pipe`` as a step runs it, with the Prefect credential fetched through the
step's OIDC token — no static credential — and a real run of ``greet/ci`` on the real Prefect server
(started with an auth string, so only the fetched credential works)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.identity import leaks
from tests.identity.conftest import ROLE_ARN, SECRET, SERVICE_ACCOUNT, VAULT_ROLE
from tests.identity.issuer import OTHER_REPO_UUID, Issuer
from tests.identity.servers import GcpStandIn, IdentityAwareProxy, Moto, OpenBao, TokenExchangeStandIn
from tests.support.leaks import assert_no_secrets
from tests.support.pipe import run_pipe
from tests.support.prefect_server import PrefectInspector, PrefectServer

pytestmark = pytest.mark.prefect


@pytest.fixture()
def oidc_env(pipe_env: dict[str, str], prefect_server: PrefectServer, issuer: Issuer) -> dict[str, str]:
    """The step's variables with `oidc: true` and no static Prefect credential."""
    env = dict(pipe_env)
    del env["PREFECT_API_AUTH_STRING"]
    env.update(
        DEPLOYMENT="greet/ci",
        DEBUG="true",  # the leak scan covers the most talkative mode
        BITBUCKET_STEP_OIDC_TOKEN=issuer.token(),
        PREFECT_API_AUTH_STRING_SECRET="vault:secret/data/prefect/ci#auth_string",
    )
    leaks.remember(prefect_server.auth_string)
    return env


@pytest.fixture()
def vault_env(oidc_env: dict[str, str], openbao: OpenBao, prefect_server: PrefectServer) -> dict[str, str]:
    # The secret holds the test server's own auth string (the fixture seeds it with the same constant).
    openbao.root().secrets.kv.v2.patch(
        path="prefect/ci", secret={"auth_string": prefect_server.auth_string}, mount_point="secret"
    )
    return {**oidc_env, "VAULT_ADDR": openbao.addr, "VAULT_ROLE": VAULT_ROLE}


def check_clean(output: str, env: dict[str, str], prefect_server: PrefectServer) -> None:
    assert_no_secrets(output, env["BITBUCKET_STEP_OIDC_TOKEN"], prefect_server.auth_string)
    leaks.assert_clean(output, "pipe output")


def test_vault(vault_env: dict[str, str], openbao: OpenBao, prefect_server: PrefectServer) -> None:
    before = openbao.accessors()
    result = run_pipe(vault_env)
    assert result.code == 0, result
    assert "vault:secret/data/prefect/ci#auth_string" in result.output  # which credential source was used
    assert openbao.accessors() == before, "the pipe must revoke its Vault token when it ends"
    check_clean(result.output, vault_env, prefect_server)


def test_vault_refusal_fails_before_any_run(
    vault_env: dict[str, str], issuer: Issuer, prefect: PrefectInspector, prefect_server: PrefectServer
) -> None:
    vault_env["BITBUCKET_STEP_OIDC_TOKEN"] = issuer.token(repositoryUuid=OTHER_REPO_UUID)
    vault_env["DEBUG"] = "false"  # DEBUG=true adds the traceback on purpose
    runs = prefect.count_all_runs()
    result = run_pipe(vault_env)
    assert result.code == 1, result
    assert 'claim "repositoryUuid" does not match' in result.output
    assert "Traceback" not in result.output
    assert prefect.count_all_runs() == runs
    check_clean(result.output, vault_env, prefect_server)


def test_oidc_source_wins_over_a_static_credential(vault_env: dict[str, str], prefect_server: PrefectServer) -> None:
    vault_env["PREFECT_API_AUTH_STRING"] = "prefect-admin:not-the-right-password"
    leaks.remember(vault_env["PREFECT_API_AUTH_STRING"])
    result = run_pipe(vault_env)
    assert result.code == 0, result  # only the fetched credential is right
    assert "OIDC" in result.output and "PREFECT_API_AUTH_STRING is ignored" in result.output
    check_clean(result.output, vault_env, prefect_server)


def test_missing_oidc_true(vault_env: dict[str, str], prefect_server: PrefectServer) -> None:
    del vault_env["BITBUCKET_STEP_OIDC_TOKEN"]
    result = run_pipe(vault_env)
    assert result.code == 1, result
    assert "Add `oidc: true` to this step" in result.output


def test_dry_run_shows_the_identity_picture(vault_env: dict[str, str], prefect_server: PrefectServer) -> None:
    result = run_pipe({**vault_env, "DRY_RUN": "true"})
    assert result.code == 0, result
    assert "Step OIDC token claims (not verified here)" in result.output
    assert '"bound_claims"' in result.output
    check_clean(result.output, vault_env, prefect_server)


def test_dry_run_shows_the_trust_condition_even_when_the_exchange_is_refused(
    vault_env: dict[str, str], prefect_server: PrefectServer
) -> None:
    result = run_pipe({**vault_env, "DRY_RUN": "true", "VAULT_ROLE": "no-such-role"})
    assert result.code == 1, result
    claims = result.output.index("Step OIDC token claims (not verified here)")
    condition = result.output.index('"bound_claims"')
    assert claims < condition < result.output.index("✖")  # printed first: the refused case needs it most
    check_clean(result.output, vault_env, prefect_server)


def test_aws_secrets_manager(oidc_env: dict[str, str], moto: Moto, prefect_server: PrefectServer) -> None:
    env = {
        **oidc_env,
        "PREFECT_API_AUTH_STRING_SECRET": "aws-sm:prefect/ci#auth_string",
        "AWS_OIDC_ROLE_ARN": ROLE_ARN,
        "AWS_DEFAULT_REGION": Moto.REGION,
        "AWS_ENDPOINT_URL": moto.url,
    }
    result = run_pipe(env)
    assert result.code == 0, result
    assert "aws-sm:prefect/ci#auth_string" in result.output
    check_clean(result.output, env, prefect_server)


def test_google_secret_manager(
    oidc_env: dict[str, str], google: GcpStandIn, gcp_variables: dict[str, Any], prefect_server: PrefectServer
) -> None:
    gcp = {k: v for k, v in gcp_variables.items() if k.startswith("GCP_")}
    env = {**oidc_env, **gcp, "PREFECT_API_AUTH_STRING_SECRET": f"gcp-sm:{SECRET}#auth_string"}
    result = run_pipe(env)
    assert result.code == 0, result
    assert f"gcp-sm:{SECRET}#auth_string" in result.output and SERVICE_ACCOUNT in result.output
    assert [r.method for r in google.received] == ["POST", "POST", "GET"]
    check_clean(result.output, env, prefect_server)


def test_token_exchange_behind_an_identity_aware_proxy(
    oidc_env: dict[str, str],
    idp: TokenExchangeStandIn,
    exchange_variables: dict[str, Any],
    prefect_server: PrefectServer,
    prefect: PrefectInspector,
) -> None:
    """The exchanged token is the bearer credential; the proxy lets only it through to Prefect."""
    proxy = IdentityAwareProxy(
        prefect_server.api_url.removesuffix("/api"), prefect_server.auth_string, accepted=lambda t: t in idp.issued
    )
    try:
        env = {k: v for k, v in oidc_env.items() if k != "PREFECT_API_AUTH_STRING_SECRET"}
        env.update({k: v for k, v in exchange_variables.items() if k.startswith("TOKEN_EXCHANGE_")})
        env.update(PREFECT_API_URL=f"{proxy.url}/api", WAIT="false")
        runs = len(prefect.flow_runs("greet/ci"))
        result = run_pipe(env)
        assert result.code == 0, result
        assert "RFC 8693 token exchange" in result.output
        assert len(idp.issued) == 1 and proxy.refused == 0
        assert len(prefect.flow_runs("greet/ci")) == runs + 1
        check_clean(result.output, env, prefect_server)
    finally:
        proxy.stop()
