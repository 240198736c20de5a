"""The leak scan itself, and every provider's success path with every library logging at DEBUG.

The autouse ``leak_scan`` fixture (conftest) already checks each identity test's printed output, log
records and raised errors; these tests make sure that scan can fail, and push logging further than the
pipe does (its console keeps HTTP libraries at WARNING even with DEBUG=true).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pipe.secret import Secret
from tests.identity import leaks
from tests.identity.calls import obtain_credential
from tests.identity.servers import Moto, OpenBao
from tests.support.pipe import BITBUCKET_ENV


def test_the_scan_catches_a_leak() -> None:
    leaks.remember("pnu_leaked-value-123456")
    with pytest.raises(AssertionError):
        leaks.assert_clean("oops pnu_leaked-value-123456")
    with pytest.raises(AssertionError):
        leaks.assert_clean("the password alone: s3cr3t-auth-Str1ng-for-tests")  # from the auth string
    try:
        raise RuntimeError("wrapped") from ValueError("pnu_leaked-value-123456")
    except RuntimeError as error:
        with pytest.raises(AssertionError):
            leaks.assert_error_clean(error)


def test_log_lines_reach_the_scanned_output_masked(capfd: pytest.CaptureFixture[str]) -> None:
    secret = Secret("pnu_registered-secret-0123456789")
    leaks.remember(secret.reveal())
    logging.getLogger("pipe.identity").info("marker-7f3a credential=%s", secret.reveal())
    out, _ = capfd.readouterr()
    assert "marker-7f3a credential=***" in out  # printed through the pipe's handler, masked


@pytest.fixture()
def everything_at_debug() -> None:
    for name in ("botocore", "boto3", "urllib3", "hvac", "google", "requests"):
        logging.getLogger(name).setLevel(logging.DEBUG)


def test_vault_with_libraries_at_debug(
    everything_at_debug: None, openbao: OpenBao, vault_variables: dict[str, Any]
) -> None:
    obtain_credential(vault_variables, BITBUCKET_ENV).close()


def test_aws_with_libraries_at_debug(everything_at_debug: None, moto: Moto, aws_variables: dict[str, Any]) -> None:
    credential = obtain_credential(aws_variables, {**BITBUCKET_ENV, "AWS_ENDPOINT_URL": moto.url})
    leaks.remember(*(v.reveal() for v in credential.cloud_env.values()))


def test_gcp_with_libraries_at_debug(everything_at_debug: None, gcp_variables: dict[str, Any]) -> None:
    obtain_credential(gcp_variables, BITBUCKET_ENV).close()


def test_token_exchange_with_libraries_at_debug(everything_at_debug: None, exchange_variables: dict[str, Any]) -> None:
    obtain_credential(exchange_variables, BITBUCKET_ENV)
