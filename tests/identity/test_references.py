"""Secret references (``<scheme>:<reference>[#field]``) and taking a field from a fetched value."""

from __future__ import annotations

import pytest

from pipe.errors import ConfigError, IdentityError
from pipe.identity.references import SecretRef, parse, pick
from tests.identity.conftest import expect

V = "PREFECT_API_KEY_SECRET"


@pytest.mark.parametrize(
    ("text", "scheme", "path", "field", "provider"),
    [
        ("aws-sm:prefect/ci", "aws-sm", "prefect/ci", None, "aws"),
        ("aws-sm:prefect/ci#api_key", "aws-sm", "prefect/ci", "api_key", "aws"),
        (
            "aws-sm:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prefect/ci-AbCdEf#api_key",
            "aws-sm",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prefect/ci-AbCdEf",
            "api_key",
            "aws",
        ),
        ("aws-ssm:/prefect/ci/api-key", "aws-ssm", "/prefect/ci/api-key", None, "aws"),
        ("AWS-SSM:prefect.key", "aws-ssm", "prefect.key", None, "aws"),
        ("gcp-sm:projects/my-proj/secrets/prefect", "gcp-sm", "projects/my-proj/secrets/prefect", None, "gcp"),
        (
            "gcp-sm:projects/my-proj/secrets/prefect/versions/7#key",
            "gcp-sm",
            "projects/my-proj/secrets/prefect/versions/7",
            "key",
            "gcp",
        ),
        ("vault:secret/data/x#f", "vault", "secret/data/x", "f", "vault"),
        ("vault:/secret/data/prefect/ci/#api_key", "vault", "secret/data/prefect/ci", "api_key", "vault"),
        ("  vault:kv/prefect#auth_string  ", "vault", "kv/prefect", "auth_string", "vault"),
    ],
)
def test_valid_references(text: str, scheme: str, path: str, field: str | None, provider: str) -> None:
    ref = parse(V, text)
    assert (ref.scheme, ref.path, ref.field, ref.provider) == (scheme, path, field, provider)
    assert ref.variable == V


def test_arn_region_and_gcp_version_name() -> None:
    assert parse(V, "aws-sm:arn:aws:secretsmanager:us-east-2:123456789012:secret:x").region == "us-east-2"
    assert parse(V, "aws-ssm:arn:aws:ssm:ap-south-1:123456789012:parameter/prefect/key").region == "ap-south-1"
    assert parse(V, "aws-sm:prefect/ci").region is None
    assert parse(V, "gcp-sm:projects/p/secrets/s").gcp_version_name == "projects/p/secrets/s/versions/latest"
    assert parse(V, "gcp-sm:projects/p/secrets/s/versions/2").gcp_version_name == "projects/p/secrets/s/versions/2"
    assert str(parse(V, "vault:secret/data/x#f")) == "vault:secret/data/x#f"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("secret/data/x#f", "PREFECT_API_KEY_SECRET must start with one of aws-sm:, aws-ssm:, gcp-sm:, vault:"),
        ("s3:bucket/key", "PREFECT_API_KEY_SECRET must start with one of"),
        ("azure-kv:vault/secret", "PREFECT_API_KEY_SECRET must start with one of"),
        ("aws-sm:", "PREFECT_API_KEY_SECRET has a malformed aws-sm reference"),
        ("aws-sm:has spaces", "PREFECT_API_KEY_SECRET has a malformed aws-sm reference"),
        ("aws-sm:arn:aws:s3:::bucket", "PREFECT_API_KEY_SECRET has a malformed aws-sm reference"),
        ("aws-sm:prefect/ci#", "PREFECT_API_KEY_SECRET has an empty or malformed #field"),
        ("aws-ssm:prefect//ci", "PREFECT_API_KEY_SECRET has a malformed aws-ssm reference"),
        ("gcp-sm:my-proj/prefect", "PREFECT_API_KEY_SECRET has a malformed gcp-sm reference"),
        ("gcp-sm:projects/p/secrets/s/versions/", "PREFECT_API_KEY_SECRET has a malformed gcp-sm reference"),
        ("vault:secret/data/x", "PREFECT_API_KEY_SECRET names a Vault secret but no #field"),
        ("vault:secret/../sys/x#f", "PREFECT_API_KEY_SECRET has a malformed vault reference"),
        ("vault:v1/secret/data/x#f", "PREFECT_API_KEY_SECRET has a malformed vault reference"),
        ("vault:secret data#f", "PREFECT_API_KEY_SECRET has a malformed vault reference"),
    ],
)
def test_malformed_references_are_config_errors_naming_the_variable(text: str, message: str) -> None:
    error = expect(ConfigError, parse, V, text)
    assert str(error).startswith(message)
    assert error.fix  # every one says what to write instead


def _ref(field: str | None) -> SecretRef:
    return SecretRef(variable=V, scheme="aws-sm", path="prefect/ci", field=field)


def test_pick_whole_value_is_stripped() -> None:
    assert pick(_ref(None), "  pnu_abcdef0123456789\n", "here").reveal() == "pnu_abcdef0123456789"


def test_pick_field_of_json() -> None:
    assert (
        pick(_ref("api_key"), '{"api_key": "pnu_abcdef0123456789", "x": 1}', "here").reveal() == "pnu_abcdef0123456789"
    )


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ("pnu_not-json-at-all", "api_key", "here returned a value that is not JSON"),
        ('["pnu_in-a-list"]', "api_key", "here returned JSON that is not an object"),
        ('{"apikey": "pnu_secret-value-here"}', "api_key", "here has no field 'api_key' (its fields: apikey)"),
        (
            '{"api_key": {"nested": "pnu_secret-value-here"}}',
            "api_key",
            "here has a field 'api_key' that is a JSON dict",
        ),
        ('{"api_key": "   "}', "api_key", "here returned an empty value"),
        ("   ", None, "here returned an empty value"),
    ],
)
def test_pick_failures_never_quote_the_value(raw: str, field: str | None, message: str) -> None:
    from tests.identity import leaks

    leaks.remember("pnu_not-json-at-all", "pnu_in-a-list", "pnu_secret-value-here")
    error = expect(IdentityError, pick, _ref(field), raw, "here")
    assert str(error).startswith(message)
