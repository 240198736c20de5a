"""Reading the step token: missing means `oidc: true` is missing; claims decode without verification."""

from __future__ import annotations

import pytest

from pipe.errors import IdentityError
from pipe.identity import oidc_token
from pipe.secret import mask
from tests.identity.calls import obtain_credential
from tests.identity.conftest import expect
from tests.identity.issuer import AUDIENCE, REPO_UUID, Issuer
from tests.support.pipe import BITBUCKET_ENV

VAULT = {
    "PREFECT_API_KEY_SECRET": "vault:secret/data/prefect/ci#api_key",
    "VAULT_ADDR": "https://vault.example.com",
    "VAULT_ROLE": "r",
}


def test_missing_token_names_the_exact_fix() -> None:
    error = expect(IdentityError, obtain_credential, VAULT, BITBUCKET_ENV)
    assert str(error) == (
        "BITBUCKET_STEP_OIDC_TOKEN is not set, but an OIDC credential source is configured. Add `oidc: true` to this "
        "step in bitbucket-pipelines.yml (next to `script:`), so Bitbucket sets BITBUCKET_STEP_OIDC_TOKEN for the pipe."
    )


def test_configuration_is_checked_before_the_token() -> None:
    """A broken variable is reported as such even when the token is missing too."""
    from pipe.errors import ConfigError

    error = expect(ConfigError, obtain_credential, {**VAULT, "VAULT_ROLE": None}, BITBUCKET_ENV)
    assert str(error).startswith("VAULT_ROLE is required")


def test_empty_token_counts_as_missing() -> None:
    error = expect(IdentityError, obtain_credential, {**VAULT, "BITBUCKET_STEP_OIDC_TOKEN": "  "}, BITBUCKET_ENV)
    assert "oidc: true" in str(error)


def test_read_wraps_and_registers_the_token(issuer: Issuer) -> None:
    raw = issuer.token()
    token = oidc_token.read(oidc_token.raw({}, {"BITBUCKET_STEP_OIDC_TOKEN": raw}))
    assert token.value.reveal() == raw
    assert raw not in repr(token) and raw not in f"{token.value}"
    assert mask(f"header {raw} trailer") == "header *** trailer"
    assert token.repository_uuid == REPO_UUID and token.audiences == [AUDIENCE] and token.branch == "main"
    assert not token.expired()


def test_variables_win_over_environment(issuer: Issuer) -> None:
    a, b = issuer.token(branchName="a"), issuer.token(branchName="b")
    assert (
        oidc_token.read(oidc_token.raw({"BITBUCKET_STEP_OIDC_TOKEN": a}, {"BITBUCKET_STEP_OIDC_TOKEN": b})).branch
        == "a"
    )


@pytest.mark.parametrize("raw", ["not-a-jwt", "a.b", "a.!!!.c", "eyJhbGciOiJub25lIn0.WzEsMl0.sig"])
def test_malformed_tokens_fail_without_echoing_them(raw: str) -> None:
    from tests.identity import leaks

    leaks.remember(raw)
    error = expect(IdentityError, oidc_token.read, oidc_token.raw({"BITBUCKET_STEP_OIDC_TOKEN": raw}, {}))
    assert "BITBUCKET_STEP_OIDC_TOKEN" in str(error)


def test_expired_and_list_audience(issuer: Issuer) -> None:
    token = oidc_token.read(
        oidc_token.raw({}, {"BITBUCKET_STEP_OIDC_TOKEN": issuer.token(exp=1_700_000_000, aud=["one", "two"])})
    )
    assert token.expired() and "expired at 2023-11-14 22:13:20 UTC" in token.expiry_note()
    assert token.audiences == ["one", "two"] and "aud=one,two" in token.summary()
    assert "expired" in token.summary()
