"""AWS: ``sts:AssumeRoleWithWebIdentity`` with the step token, then Secrets Manager or SSM.

The token goes straight into the (unsigned) STS call, so it never touches the disk. The temporary
credentials stay in memory: they sign the one read, and are handed back in ``cloud_env`` only for a
later ``ACTION=deploy`` subprocess. Endpoints follow boto3's standard ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>`` variables of the step's environment. boto3 is imported only here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from pipe.credentials import Credential, check_fetched
from pipe.errors import IdentityError
from pipe.identity import references, retry
from pipe.identity.oidc_token import StepToken
from pipe.identity.settings import AwsSettings, Settings
from pipe.secret import Secret, mask

# Error codes that say "try again" rather than "no".
_TRANSIENT_CODES = {
    "IDPCommunicationError",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "InternalServiceError",
    "InternalServiceErrorException",
    "RequestTimeout",
    "RequestTimeoutException",
}


def obtain(settings: Settings, token: StepToken) -> Credential:
    aws, ref = settings.aws, settings.ref
    assert aws is not None and ref is not None
    with _botocore_quiet():
        keys = _assume_role(aws, token)
        if ref.scheme == "aws-sm":
            raw, where = _get_secret_value(aws, keys, ref.path), f"AWS Secrets Manager secret {ref.path} ({aws.region})"
        else:
            raw, where = _get_parameter(aws, keys, ref.path), f"AWS SSM parameter {ref.path} ({aws.region})"
    value = references.pick(ref, raw, where)
    check_fetched(settings.kind, value, where)
    return Credential(
        kind=settings.kind,
        value=value,
        source=f"{settings.variable}={ref} (AWS role {aws.role_arn}, session {aws.session_name}, via the step's OIDC token)",
        cloud_env=keys,
    )


@contextlib.contextmanager
def _botocore_quiet() -> Iterator[None]:
    """botocore logs request and response bodies at DEBUG: the STS answer holds the temporary keys, and
    the Secrets Manager answer the Prefect credential, before this module can register them for masking.
    Whatever the logging set-up, those loggers stay at WARNING while the calls run."""
    loggers = [logging.getLogger(name) for name in ("botocore", "boto3", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _config(timeout: float, unsigned: bool = False) -> Any:
    from botocore import UNSIGNED
    from botocore.config import Config

    options: dict[str, Any] = {
        "connect_timeout": min(5.0, timeout),
        "read_timeout": timeout,
        "retries": {"total_max_attempts": 1},  # our own bounded retry decides
    }
    if unsigned:
        options["signature_version"] = UNSIGNED
    return Config(**options)


def _assume_role(aws: AwsSettings, token: StepToken) -> dict[str, Secret]:
    import boto3

    hop = f"AWS STS AssumeRoleWithWebIdentity ({aws.role_arn})"
    params: dict[str, Any] = {"RoleArn": aws.role_arn, "RoleSessionName": aws.session_name}
    if aws.duration_seconds:
        params["DurationSeconds"] = aws.duration_seconds
    session = boto3.session.Session()

    def attempt(timeout: float) -> Any:
        # Unsigned: the web identity token is the credential. No ambient AWS keys are consulted.
        sts = session.client(
            "sts", region_name=aws.sts_region, endpoint_url=aws.endpoint("sts"), config=_config(timeout, unsigned=True)
        )
        return sts.assume_role_with_web_identity(WebIdentityToken=token.value.reveal(), **params)

    response = retry.hop(
        hop,
        attempt,
        _transient,
        reason=_reason,
        unreachable="AWS could not be reached or could not reach Bitbucket's OIDC endpoint; rerun the step",
        fix=lambda exc: _sts_fix(aws, token, exc),
        refused="refused the step token",
    )
    creds = response["Credentials"]
    # Wrapped at once: from here on they are masked wherever they might appear.
    return {
        "AWS_ACCESS_KEY_ID": Secret(creds["AccessKeyId"]),
        "AWS_SECRET_ACCESS_KEY": Secret(creds["SecretAccessKey"]),
        "AWS_SESSION_TOKEN": Secret(creds["SessionToken"]),
    }


def _sts_fix(aws: AwsSettings, token: StepToken, exc: Exception) -> str:
    code = _code(exc)
    provider = (
        token.issuer.removeprefix("https://")
        or "api.bitbucket.org/2.0/workspaces/<workspace>/pipelines-config/identity/oidc"
    )
    aud = ", ".join(token.audiences) or "<aud>"
    repo = token.repository_uuid or "{repository-uuid}"
    claims = f"this token: {token.summary()}"
    if code == "ExpiredTokenException" or token.expired():
        return f"the step token has expired{token.expiry_note()}; tokens are issued when the step starts"
    if code == "InvalidIdentityToken":
        return (
            f"create the IAM OIDC identity provider {provider} in account {aws.account} with audience '{aud}' "
            f"(IAM > Identity providers), and keep its keys current ({claims})"
        )
    if code in ("AccessDenied", "IDPRejectedClaim"):
        return (
            f"the trust policy of {aws.role_arn} must allow sts:AssumeRoleWithWebIdentity for "
            f"arn:aws:iam::{aws.account}:oidc-provider/{provider} with '{provider}:aud' = '{aud}' and "
            f"'{provider}:sub' like '{repo}:*' ({claims})"
        )
    if code == "ValidationError":
        return "check AWS_ROLE_SESSION_NAME, and that AWS_ROLE_DURATION_SECONDS is within the role's maximum session duration"
    return f"check the role's trust policy ({claims})"


def _session(aws: AwsSettings, keys: dict[str, Secret]) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"].reveal(),
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"].reveal(),
        aws_session_token=keys["AWS_SESSION_TOKEN"].reveal(),
        region_name=aws.region,
    )


def _get_secret_value(aws: AwsSettings, keys: dict[str, Secret], secret_id: str) -> str:
    hop = f"AWS Secrets Manager GetSecretValue ({secret_id} in {aws.region})"
    session = _session(aws, keys)

    def attempt(timeout: float) -> Any:
        client = session.client("secretsmanager", endpoint_url=aws.endpoint("secretsmanager"), config=_config(timeout))
        return client.get_secret_value(SecretId=secret_id)

    response = _read(hop, attempt, aws, fix_for=lambda code: _secrets_fix(code, aws, secret_id))
    if response.get("SecretString") is not None:
        return Secret(response["SecretString"]).reveal()
    binary = response.get("SecretBinary")
    if isinstance(binary, bytes | bytearray):
        try:
            return Secret(bytes(binary).decode("utf-8")).reveal()
        except UnicodeDecodeError:
            pass
    raise IdentityError(f"{hop} returned no text value", "store the Prefect credential as the secret's string value")


def _secrets_fix(code: str, aws: AwsSettings, secret_id: str) -> str:
    if code == "ResourceNotFoundException":
        return f"create the secret or fix the name; it is looked up in {aws.region} (AWS_DEFAULT_REGION, or the ARN's region)"
    if code in ("AccessDeniedException", "AccessDenied"):
        return f"allow secretsmanager:GetSecretValue on the secret {secret_id} to {aws.role_arn} (and kms:Decrypt for a customer-managed key)"
    if code in ("DecryptionFailure", "KMSAccessDeniedException"):
        return f"allow kms:Decrypt on the secret's KMS key to {aws.role_arn}"
    if code == "InvalidRequestException":
        return "the secret is scheduled for deletion or has no current version; restore it"
    return "check the secret and the role's permissions"


def _get_parameter(aws: AwsSettings, keys: dict[str, Secret], name: str) -> str:
    hop = f"AWS SSM GetParameter ({name} in {aws.region})"
    session = _session(aws, keys)

    def attempt(timeout: float) -> Any:
        client = session.client("ssm", endpoint_url=aws.endpoint("ssm"), config=_config(timeout))
        return client.get_parameter(Name=name, WithDecryption=True)

    def fix(code: str) -> str:
        if code == "ParameterNotFound":
            return f"create the parameter or fix the name; it is looked up in {aws.region}"
        if code in ("AccessDeniedException", "AccessDenied"):
            return (
                f"allow ssm:GetParameter on the parameter {name} (and kms:Decrypt for a SecureString) to {aws.role_arn}"
            )
        return "check the parameter and the role's permissions"

    response = _read(hop, attempt, aws, fix_for=fix)
    return Secret(response["Parameter"]["Value"]).reveal()


def _read(hop: str, attempt: Any, aws: AwsSettings, fix_for: Any) -> Any:
    return retry.hop(
        hop,
        attempt,
        _transient,
        reason=_reason,
        unreachable="rerun the step; check the AWS service health",
        fix=lambda exc: fix_for(_code(exc)),
    )


def _transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ConnectionError | HTTPClientError):  # refused, reset, DNS, timeouts
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return _code(exc) in _TRANSIENT_CODES or status == 429 or status >= 500
    return False


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or "")
    return ""


def _reason(exc: BaseException) -> str:
    """``Code: Message`` from AWS, or the exception class for network failures (their text has URLs)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        text = f"{error.get('Code') or 'Error'}: {error.get('Message') or ''}".rstrip(": ")
    else:
        text = type(exc).__name__
    return mask(" ".join(text.split()))[:300]
