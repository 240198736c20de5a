"""Fixtures of the identity tests: the issuer, the servers, no waiting on retries, and the leak scan."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pipe import console  # imported at collection: the toolkit re-wraps sys.stdout/stderr on import
from pipe.errors import PipeError
from tests.identity import leaks
from tests.identity.issuer import AUDIENCE, REPO_UUID, Issuer, random_secret
from tests.identity.servers import GcpStandIn, GcpWorld, Moto, OpenBao, TokenExchangeStandIn
from tests.support.prefect_server import AUTH_STRING

leaks.remember(AUTH_STRING)
# The Prefect credentials the secret stores hold.
PREFECT_API_KEY = random_secret("pnu_")
VAULT_ROLE = "prefect-ci"
VAULT_POLICY = "prefect-ci-read"


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture()
def step_token(issuer: Issuer) -> str:
    return issuer.token()


@pytest.fixture(autouse=True)
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries do not really wait in tests; the pauses they asked for are recorded."""
    from pipe.identity import retry

    asked: list[float] = []
    monkeypatch.setattr(retry, "sleep", asked.append)
    return asked


class _CurrentStdout:
    """Writes to whatever sys.stdout is now (pytest swaps it per test and phase)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def leak_scan(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Log as the pipe does with DEBUG=true, then check every byte printed and every record logged."""
    names = ["", *console._NOISY, "pipe", "pipe.identity"]
    levels = {name: logging.getLogger(name).level for name in names}
    # console.setup points every StreamHandler at sys.stdout; pytest's handlers must keep their own streams,
    # and the toolkit's handler gets one that follows pytest's capture.
    streams = {h: h.stream for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)}
    for handler in streams:
        handler.stream = _CurrentStdout()  # setStream would flush the old one, which may be closed
    console.setup(debug=True)
    for handler, stream in streams.items():
        handler.stream = stream if type(handler).__module__.startswith("_pytest") else _CurrentStdout()
    caplog.set_level(logging.DEBUG)
    yield
    out, err = capfd.readouterr()
    leaks.assert_clean(out + err, "printed output")
    leaks.assert_clean(caplog.text, "log")
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for handler, stream in streams.items():
        handler.stream = stream


def expect(error: type[PipeError], call: Any, *args: Any) -> PipeError:
    """Run ``call`` expecting ``error``; its message (and its chain) must not leak anything."""
    with pytest.raises(error) as info:
        call(*args)
    leaks.assert_error_clean(info.value)
    return info.value


# --------------------------------------------------------------------------------------------- Vault


@pytest.fixture(scope="session")
def openbao(issuer: Issuer) -> Iterator[OpenBao]:
    """A real OpenBao dev server with JWT auth that trusts the test issuer for one repository."""
    server = OpenBao()
    try:
        root = server.root()
        root.sys.enable_auth_method("jwt", path="jwt")
        root.write_data(
            "auth/jwt/config",
            data={"jwt_validation_pubkeys": [issuer.public_pem], "bound_issuer": issuer.claims()["iss"]},
        )
        root.sys.create_or_update_policy(VAULT_POLICY, 'path "secret/data/prefect/*" { capabilities = ["read"] }')
        root.write_data(
            f"auth/jwt/role/{VAULT_ROLE}",
            data={
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": [AUDIENCE],
                "bound_claims": {"repositoryUuid": REPO_UUID},
                "token_policies": [VAULT_POLICY],
                "token_ttl": "5m",
            },
        )
        root.secrets.kv.v2.create_or_update_secret(
            path="prefect/ci", secret={"api_key": PREFECT_API_KEY, "auth_string": AUTH_STRING}, mount_point="secret"
        )
        root.secrets.kv.v2.create_or_update_secret(
            path="other/team", secret={"api_key": "pnu_not-for-this-repo"}, mount_point="secret"
        )
        yield server
    finally:
        server.stop()


@pytest.fixture()
def vault_variables(openbao: OpenBao, step_token: str) -> dict[str, Any]:
    return {
        "PREFECT_API_KEY_SECRET": "vault:secret/data/prefect/ci#api_key",
        "VAULT_ADDR": openbao.addr,
        "VAULT_ROLE": VAULT_ROLE,
        "VAULT_AUTH_PATH": "jwt",
        "BITBUCKET_STEP_OIDC_TOKEN": step_token,
    }


# --------------------------------------------------------------------------------------------- AWS


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    server = Moto()
    try:
        logging.getLogger("botocore").setLevel(logging.WARNING)  # seeding logs request bodies at DEBUG
        sm = server.client("secretsmanager")
        sm.create_secret(
            Name="prefect/ci", SecretString=f'{{"api_key": "{PREFECT_API_KEY}", "auth_string": "{AUTH_STRING}"}}'
        )
        sm.create_secret(Name="prefect/plain-key", SecretString=PREFECT_API_KEY)
        server.client("ssm").put_parameter(Name="/prefect/ci/api-key", Value=PREFECT_API_KEY, Type="SecureString")
        yield server
    finally:
        server.stop()


ROLE_ARN = f"arn:aws:iam::{Moto.ACCOUNT}:role/prefect-ci"


@pytest.fixture()
def aws_variables(step_token: str) -> dict[str, Any]:
    return {
        "PREFECT_API_KEY_SECRET": "aws-sm:prefect/ci#api_key",
        "AWS_OIDC_ROLE_ARN": ROLE_ARN,
        "AWS_DEFAULT_REGION": Moto.REGION,
        "BITBUCKET_STEP_OIDC_TOKEN": step_token,
    }


# --------------------------------------------------------------------------------------------- Google Cloud

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
SERVICE_ACCOUNT = "prefect-reader@my-proj.iam.gserviceaccount.com"
SECRET = "projects/my-proj/secrets/prefect-ci"


@pytest.fixture()
def world() -> GcpWorld:
    return GcpWorld(
        provider_audience=f"//iam.googleapis.com/{PROVIDER}",
        allowed_audiences=[AUDIENCE],
        condition=lambda claims: claims.get("repositoryUuid") == REPO_UUID,
        service_account=SERVICE_ACCOUNT,
        sa_grantees={REPO_UUID},
        secrets={SECRET: json.dumps({"api_key": PREFECT_API_KEY, "auth_string": AUTH_STRING})},
        accessors={f"sa:{SERVICE_ACCOUNT}", f"repo:{REPO_UUID}"},
    )


@pytest.fixture()
def google(world: GcpWorld, issuer: Issuer) -> Iterator[GcpStandIn]:
    server = GcpStandIn(world, verify=lambda token, audiences: issuer.verify(token, audiences))
    yield server
    server.stop()


@pytest.fixture()
def gcp_variables(google: GcpStandIn, step_token: str) -> dict[str, Any]:
    return {
        "PREFECT_API_KEY_SECRET": f"gcp-sm:{SECRET}#api_key",
        "GCP_WORKLOAD_IDENTITY_PROVIDER": PROVIDER,
        "GCP_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "GCP_STS_ENDPOINT": f"{google.url}/v1/token",
        "GCP_IAM_CREDENTIALS_ENDPOINT": google.url,
        "GCP_SECRET_MANAGER_ENDPOINT": google.url,
        "BITBUCKET_STEP_OIDC_TOKEN": step_token,
    }


# --------------------------------------------------------------------------------------------- RFC 8693

EXCHANGE_AUDIENCE = "prefect-api"
CLIENT_ID = "bitbucket-pipelines"


@pytest.fixture()
def idp(issuer: Issuer) -> Iterator[TokenExchangeStandIn]:
    server = TokenExchangeStandIn(
        verify=issuer.verify, repository=REPO_UUID, audience=EXCHANGE_AUDIENCE, client_id=CLIENT_ID
    )
    yield server
    server.stop()


@pytest.fixture()
def exchange_variables(idp: TokenExchangeStandIn, step_token: str) -> dict[str, Any]:
    return {
        "TOKEN_EXCHANGE_URL": f"{idp.url}/oauth2/token",
        "TOKEN_EXCHANGE_AUDIENCE": EXCHANGE_AUDIENCE,
        "TOKEN_EXCHANGE_SCOPE": "prefect:run prefect:read",
        "TOKEN_EXCHANGE_CLIENT_ID": CLIENT_ID,
        "BITBUCKET_STEP_OIDC_TOKEN": step_token,
    }
