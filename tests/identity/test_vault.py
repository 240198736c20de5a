"""Vault / OpenBao: a real OpenBao dev server validates the step token (signature, aud, exp, bound claims)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from pipe.errors import ConfigError, IdentityError
from tests.identity.calls import obtain_credential
from tests.identity.conftest import PREFECT_API_KEY, VAULT_ROLE, expect
from tests.identity.issuer import AUDIENCE, OTHER_REPO_UUID, REPO_UUID, Issuer
from tests.identity.servers import OpenBao
from tests.support.pipe import BITBUCKET_ENV
from tests.support.prefect_server import AUTH_STRING


def test_api_key_from_kv_v2_then_vault_token_revoked_on_close(
    openbao: OpenBao, vault_variables: dict[str, Any]
) -> None:
    before = openbao.accessors()
    credential = obtain_credential(vault_variables, BITBUCKET_ENV)
    assert credential.kind == "api_key"
    assert credential.value is not None and credential.value.reveal() == PREFECT_API_KEY
    assert "vault:secret/data/prefect/ci#api_key" in credential.source and VAULT_ROLE in credential.source
    assert credential.cloud_env == {}  # the Vault token is not handed on

    new = openbao.accessors() - before
    assert len(new) == 1, "the login should have created exactly one Vault token"
    (accessor,) = new
    assert openbao.token_alive(accessor)
    credential.close()
    assert not openbao.token_alive(accessor), "closing the credential must revoke the Vault token"
    credential.close()  # idempotent


def test_auth_string_field(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    variables = dict(vault_variables)
    del variables["PREFECT_API_KEY_SECRET"]
    variables["PREFECT_API_AUTH_STRING_SECRET"] = "vault:secret/data/prefect/ci#auth_string"
    credential = obtain_credential(variables, BITBUCKET_ENV)
    try:
        assert credential.kind == "auth_string"
        assert credential.value is not None and credential.value.reveal() == AUTH_STRING
    finally:
        credential.close()


def test_token_read_from_environment_when_not_in_variables(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    token = vault_variables.pop("BITBUCKET_STEP_OIDC_TOKEN")
    credential = obtain_credential(vault_variables, {**BITBUCKET_ENV, "BITBUCKET_STEP_OIDC_TOKEN": token})
    credential.close()
    assert credential.value is not None and credential.value.reveal() == PREFECT_API_KEY


def test_wrong_audience_is_refused_with_the_audience_to_bind(
    openbao: OpenBao, vault_variables: dict[str, Any], issuer: Issuer, pauses: list[float]
) -> None:
    vault_variables["BITBUCKET_STEP_OIDC_TOKEN"] = issuer.token(aud="ari:cloud:bitbucket::workspace/someone-else")
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    text = str(error)
    assert f"Vault JWT login at {openbao.addr}/v1/auth/jwt/login" in text
    assert "invalid audience" in text  # OpenBao's own words
    assert "bound_audiences" in text and "ari:cloud:bitbucket::workspace/someone-else" in text
    assert pauses == [], "a definite refusal must not be retried"


def test_other_repository_is_refused_quoting_its_repository_uuid(
    openbao: OpenBao, vault_variables: dict[str, Any], issuer: Issuer
) -> None:
    vault_variables["BITBUCKET_STEP_OIDC_TOKEN"] = issuer.token(repositoryUuid=OTHER_REPO_UUID)
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert 'claim "repositoryUuid" does not match' in str(error)
    assert f"repositoryUuid = '{OTHER_REPO_UUID}'" in str(error)
    assert "bound_claims" in str(error)


def test_expired_token_is_refused_with_rerun_advice(
    openbao: OpenBao, vault_variables: dict[str, Any], issuer: Issuer
) -> None:
    vault_variables["BITBUCKET_STEP_OIDC_TOKEN"] = issuer.token(exp=1_700_000_000, iat=1_699_990_000)
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert "token is expired" in str(error)
    assert "rerun the step" in str(error)


def test_missing_secret_revokes_the_token_it_logged_in_with(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    vault_variables["PREFECT_API_KEY_SECRET"] = "vault:secret/data/prefect/nope#api_key"
    before = openbao.accessors()
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert f"Vault read of {openbao.addr}/v1/secret/data/prefect/nope failed: not found (404)" in str(error)
    assert "Create the secret at secret/data/prefect/nope" in str(error)
    assert openbao.accessors() == before, "the Vault token must be revoked even when the read fails"


def test_kv_v2_path_without_data_gets_the_hint(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    vault_variables["PREFECT_API_KEY_SECRET"] = "vault:secret/prefect/ci#api_key"
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert "KV v2 mount, the path needs data/" in str(error)


def test_policy_denies_other_path(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    vault_variables["PREFECT_API_KEY_SECRET"] = "vault:secret/data/other/team#api_key"
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert "permission denied" in str(error)
    assert 'path "secret/data/other/team" { capabilities = ["read"] }' in str(error)


def test_missing_field_names_the_fields_not_the_values(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    vault_variables["PREFECT_API_KEY_SECRET"] = "vault:secret/data/prefect/ci#apikey"
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert "has no field 'apikey' (its fields: api_key, auth_string)" in str(error)


def test_auth_string_must_look_like_user_password(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    del vault_variables["PREFECT_API_KEY_SECRET"]
    vault_variables["PREFECT_API_AUTH_STRING_SECRET"] = "vault:secret/data/prefect/ci#api_key"
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert "not of the form user:password" in str(error)


def test_unknown_role(openbao: OpenBao, vault_variables: dict[str, Any]) -> None:
    vault_variables["VAULT_ROLE"] = "nobody"
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert 'role "nobody" could not be found' in str(error)
    assert "auth/jwt/role/nobody" in str(error)


def test_unreachable_vault_is_retried_then_reported(vault_variables: dict[str, Any], pauses: list[float]) -> None:
    from tests.support.processes import free_port

    vault_variables["VAULT_ADDR"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    error = expect(IdentityError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert "failed 3 times: ConnectionError" in str(error)
    assert len(pauses) == 2 and all(0 < p < 5 for p in pauses)


def test_plain_http_to_a_remote_vault_is_a_config_error(vault_variables: dict[str, Any]) -> None:
    vault_variables["VAULT_ADDR"] = "http://vault.example.com:8200"
    error = expect(ConfigError, obtain_credential, vault_variables, BITBUCKET_ENV)
    assert str(error).startswith("VAULT_ADDR uses plain http://")


def test_vault_token_revoked_at_exit_if_never_closed(
    openbao: OpenBao, vault_variables: dict[str, Any], tmp_path: Any
) -> None:
    """A pipe that dies before closing still revokes: the atexit safety net, in a real interpreter exit."""
    script = tmp_path / "leave_open.py"
    script.write_text(
        "import json, sys\n"
        "from pipe import identity\n"
        "identity.obtain_credential(identity.load(json.loads(sys.argv[1]), {}))\n"
        "print('obtained')\n"
    )
    before = openbao.accessors()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(vault_variables)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "obtained" in done.stdout
    assert openbao.accessors() == before


def test_nothing_written_to_disk(
    openbao: OpenBao, vault_variables: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Vault path keeps the token in memory: no temporary files appear."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    credential = obtain_credential(vault_variables, BITBUCKET_ENV)
    credential.close()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def team_namespace(openbao: OpenBao, issuer: Issuer) -> str:
    """An OpenBao namespace with its own JWT auth mount (named 'bitbucket') and KV v2 mount."""
    import hvac

    openbao.root().sys.create_namespace(path="team")
    ns = hvac.Client(url=openbao.addr, token=OpenBao.ROOT_TOKEN, namespace="team", timeout=10)
    ns.sys.enable_auth_method("jwt", path="bitbucket")
    ns.write_data("auth/bitbucket/config", data={"jwt_validation_pubkeys": [issuer.public_pem]})
    ns.sys.create_or_update_policy("read", 'path "kv/data/prefect" { capabilities = ["read"] }')
    ns.write_data(
        "auth/bitbucket/role/ci",
        data={
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": [AUDIENCE],
            "bound_claims": {"repositoryUuid": REPO_UUID},
            "token_policies": ["read"],
        },
    )
    ns.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
    ns.secrets.kv.v2.create_or_update_secret(path="prefect", secret={"api_key": PREFECT_API_KEY}, mount_point="kv")
    return "team"


def test_namespace_and_custom_auth_mount(openbao: OpenBao, team_namespace: str, step_token: str) -> None:
    import hvac

    variables = {
        "PREFECT_API_KEY_SECRET": "vault:kv/data/prefect#api_key",
        "VAULT_ADDR": openbao.addr,
        "VAULT_ROLE": "ci",
        "VAULT_AUTH_PATH": "/bitbucket/",
        "VAULT_NAMESPACE": team_namespace,
        "BITBUCKET_STEP_OIDC_TOKEN": step_token,
    }
    ns = hvac.Client(url=openbao.addr, token=OpenBao.ROOT_TOKEN, namespace=team_namespace, timeout=10)

    def accessors() -> set[str]:
        listed = ns.list("auth/token/accessors")  # None when the namespace has no tokens
        return set(listed["data"]["keys"]) if listed else set()

    before = accessors()
    credential = obtain_credential(variables, BITBUCKET_ENV)
    assert credential.value is not None and credential.value.reveal() == PREFECT_API_KEY
    assert len(accessors() - before) == 1, "the token lives in the namespace"
    credential.close()
    assert accessors() == before
