"""The package's promises to the rest of the pipe: cheap to import, a schema pipe.config can merge."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipe.identity.variables import VARIABLES
from tests.identity.calls import is_configured
from tests.support.pipe import ROOT

INTERFACE = {
    "PREFECT_API_KEY_SECRET", "PREFECT_API_AUTH_STRING_SECRET", "AWS_OIDC_ROLE_ARN", "AWS_DEFAULT_REGION",
    "AWS_ROLE_SESSION_NAME", "AWS_ROLE_DURATION_SECONDS", "GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_SERVICE_ACCOUNT",
    "VAULT_ADDR", "VAULT_ROLE", "VAULT_AUTH_PATH", "VAULT_NAMESPACE", "TOKEN_EXCHANGE_URL", "TOKEN_EXCHANGE_AUDIENCE",
    "TOKEN_EXCHANGE_SCOPE", "TOKEN_EXCHANGE_CLIENT_ID", "BITBUCKET_STEP_OIDC_TOKEN",
    "GCP_STS_ENDPOINT", "GCP_IAM_CREDENTIALS_ENDPOINT", "GCP_SECRET_MANAGER_ENDPOINT",
}  # fmt: skip


def test_import_is_cheap() -> None:
    code = (
        "import sys, pipe.identity, pipe.identity.variables;"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'google', 'hvac', 'requests', 'jwt'});"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_schema_entries() -> None:
    assert set(VARIABLES) == INTERFACE
    for name, rules in VARIABLES.items():
        assert rules["required"] is False and rules["nullable"] is True, name
        assert rules["meta"]["hint"], name
    assert VARIABLES["AWS_ROLE_DURATION_SECONDS"]["type"] == "integer"
    assert (VARIABLES["AWS_ROLE_DURATION_SECONDS"]["min"], VARIABLES["AWS_ROLE_DURATION_SECONDS"]["max"]) == (
        900,
        43200,
    )
    assert VARIABLES["VAULT_AUTH_PATH"]["default"] == "jwt"


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"AWS_ROLE_DURATION_SECONDS": "900"}, True),
        ({"AWS_ROLE_DURATION_SECONDS": "60"}, False),
        ({"AWS_ROLE_DURATION_SECONDS": "soon"}, False),
    ],
)
def test_schema_validates_with_cerberus(env: dict[str, str], ok: bool) -> None:
    from cerberus import Validator

    document = {k: int(v) if v.isdigit() else v for k, v in env.items()}
    validator = Validator(VARIABLES)
    assert validator.validate(document) is ok
    if ok:
        assert validator.document["VAULT_AUTH_PATH"] == "jwt"


def test_is_configured() -> None:
    assert not is_configured({})
    assert not is_configured({"PREFECT_API_KEY_SECRET": "", "TOKEN_EXCHANGE_URL": None, "VAULT_ADDR": "https://v"})
    assert is_configured({"PREFECT_API_KEY_SECRET": "aws-sm:x"})
    assert is_configured({"PREFECT_API_AUTH_STRING_SECRET": "vault:a#b"})
    assert is_configured({"TOKEN_EXCHANGE_URL": "https://idp/token"})


def test_default_session_name_names_the_build() -> None:
    from pipe.build import Build
    from pipe.identity.settings import default_session_name

    assert (
        default_session_name(Build.from_env({"BITBUCKET_REPO_SLUG": "data-pipelines", "BITBUCKET_BUILD_NUMBER": "42"}))
        == "bitbucket-data-pipelines-42"
    )
    long = default_session_name(
        Build.from_env({"BITBUCKET_REPO_SLUG": "x" * 100 + " y", "BITBUCKET_BUILD_NUMBER": "1234567"})
    )
    assert len(long) == 64 and long.endswith("-1234567")
    assert default_session_name(Build.from_env({})) == "bitbucket-repo-local"
