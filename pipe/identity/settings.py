"""The identity variables, validated into typed settings before anything touches the network.

Every problem is one :class:`ConfigError` naming the variable and the fix. Nothing here imports a
cloud library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pipe.build import Build
from pipe.errors import ConfigError
from pipe.identity import references
from pipe.identity.references import SecretRef
from pipe.identity.variables import GCP_IAM_CREDENTIALS_DEFAULT, GCP_SECRET_MANAGER_DEFAULT, GCP_STS_DEFAULT
from pipe.urls import secure_url

KEY_VARIABLE = "PREFECT_API_KEY_SECRET"
AUTH_STRING_VARIABLE = "PREFECT_API_AUTH_STRING_SECRET"
EXCHANGE_VARIABLE = "TOKEN_EXCHANGE_URL"
SOURCES = (KEY_VARIABLE, AUTH_STRING_VARIABLE, EXCHANGE_VARIABLE)

_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(?P<account>\d{12}):role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_SESSION_CHARS = re.compile(r"[^\w+=,.@-]+")
_WIF_PROVIDER = re.compile(
    r"^(//iam\.googleapis\.com/)?projects/(?P<number>\d+)/locations/global/workloadIdentityPools/"
    r"(?P<pool>[a-z0-9-]{4,32})/providers/(?P<provider>[a-z0-9-]{4,32})$"
)
_SERVICE_ACCOUNT = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
_MOUNT = re.compile(r"^[\w.-]+(/[\w.-]+)*$")


@dataclass(frozen=True)
class AwsSettings:
    role_arn: str
    region: str  # where the secret lives (an ARN's region wins over AWS_DEFAULT_REGION)
    sts_region: str
    session_name: str
    duration_seconds: int | None
    # Standard boto3 overrides, read from the step's environment (AWS_ENDPOINT_URL[_<SERVICE>]).
    endpoints: Mapping[str, str]

    @property
    def account(self) -> str:
        match = _ROLE_ARN.match(self.role_arn)
        return match.group("account") if match else "<account>"

    def endpoint(self, service: str) -> str | None:
        return self.endpoints.get(service) or self.endpoints.get("")


@dataclass(frozen=True)
class GcpSettings:
    audience: str  # //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/Q
    project_number: str
    pool: str
    provider: str
    service_account: str | None
    sts_url: str
    iam_credentials_url: str
    secret_manager_url: str


@dataclass(frozen=True)
class VaultSettings:
    addr: str
    role: str
    auth_path: str
    namespace: str | None

    @property
    def login_url(self) -> str:
        return f"{self.addr}/v1/auth/{self.auth_path}/login"


@dataclass(frozen=True)
class ExchangeSettings:
    url: str
    audience: str | None
    scope: str | None
    client_id: str | None


@dataclass(frozen=True)
class Settings:
    """Which credential to fetch (``kind``, from ``variable``) and from where."""

    variable: str
    kind: Literal["api_key", "auth_string"]
    provider: Literal["aws", "gcp", "vault", "token-exchange"]
    ref: SecretRef | None  # None for the token exchange, whose answer *is* the credential
    aws: AwsSettings | None = None
    gcp: GcpSettings | None = None
    vault: VaultSettings | None = None
    exchange: ExchangeSettings | None = None


def value(variables: Mapping[str, Any], name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A variable as a stripped string (validated variables first, then the raw environment)."""
    raw = variables.get(name)
    if raw is None and env is not None:
        raw = env.get(name)
    if raw is None:
        return None
    text = str(raw).strip()
    return text or None


def configured_sources(variables: Mapping[str, Any]) -> list[str]:
    return [name for name in SOURCES if value(variables, name)]


def load(variables: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    sources = configured_sources(variables)
    if not sources:
        raise ConfigError(
            "No OIDC credential source is configured",
            f"set {KEY_VARIABLE}, {AUTH_STRING_VARIABLE} or {EXCHANGE_VARIABLE}",
        )
    if len(sources) > 1:
        raise ConfigError(
            f"{' and '.join(sources)} are both set, but the pipe uses one Prefect credential",
            "keep only one of them",
        )
    _check_exchange_options(variables, sources[0])
    source = sources[0]
    if source == EXCHANGE_VARIABLE:
        return Settings(
            variable=source, kind="api_key", provider="token-exchange", ref=None, exchange=_exchange(variables)
        )

    kind: Literal["api_key", "auth_string"] = "api_key" if source == KEY_VARIABLE else "auth_string"
    ref = references.parse(source, value(variables, source) or "")
    if ref.provider == "aws":
        return Settings(source, kind, "aws", ref, aws=_aws(variables, env, ref))
    if ref.provider == "gcp":
        return Settings(source, kind, "gcp", ref, gcp=_gcp(variables))
    return Settings(source, kind, "vault", ref, vault=_vault(variables))


def _check_exchange_options(variables: Mapping[str, Any], source: str) -> None:
    if source == EXCHANGE_VARIABLE:
        return
    for name in ("TOKEN_EXCHANGE_AUDIENCE", "TOKEN_EXCHANGE_SCOPE", "TOKEN_EXCHANGE_CLIENT_ID"):
        if value(variables, name):
            raise ConfigError(
                f"{name} is set but {EXCHANGE_VARIABLE} is not", f"set {EXCHANGE_VARIABLE} or remove {name}"
            )


def _aws(variables: Mapping[str, Any], env: Mapping[str, str], ref: SecretRef) -> AwsSettings:
    role_arn = value(variables, "AWS_OIDC_ROLE_ARN")
    if not role_arn:
        raise ConfigError(
            f"AWS_OIDC_ROLE_ARN is required for {ref.variable}={ref.scheme}:…",
            "set it to the ARN of the IAM role whose trust policy accepts this repository's OIDC tokens",
        )
    if not _ROLE_ARN.match(role_arn):
        raise ConfigError(
            f"AWS_OIDC_ROLE_ARN {role_arn!r} is not an IAM role ARN", "use arn:aws:iam::<12-digit account>:role/<name>"
        )

    default_region = value(variables, "AWS_DEFAULT_REGION", env)
    if default_region and not _REGION.match(default_region):
        raise ConfigError(f"AWS_DEFAULT_REGION {default_region!r} is not a region name", "use e.g. eu-west-1")
    region = ref.region or default_region
    if not region:
        raise ConfigError(
            f"AWS_DEFAULT_REGION is required for {ref.variable}", "set it to the region of the secret, e.g. eu-west-1"
        )

    session_name = value(variables, "AWS_ROLE_SESSION_NAME")
    if session_name and not _SESSION_NAME.match(session_name):
        raise ConfigError(
            "AWS_ROLE_SESSION_NAME must be 2-64 characters of letters, digits and _+=,.@-", "shorten or fix it"
        )

    duration = variables.get("AWS_ROLE_DURATION_SECONDS")
    if duration is not None and duration != "":
        try:
            duration = int(duration)
        except (TypeError, ValueError):
            raise ConfigError("AWS_ROLE_DURATION_SECONDS must be a whole number", "use 900-43200") from None
        if not 900 <= duration <= 43200:
            raise ConfigError("AWS_ROLE_DURATION_SECONDS must be between 900 and 43200", "use e.g. 900 (15 minutes)")
    else:
        duration = None

    endpoints = {}
    for service, suffix in (("", ""), ("sts", "_STS"), ("secretsmanager", "_SECRETS_MANAGER"), ("ssm", "_SSM")):
        url = env.get(f"AWS_ENDPOINT_URL{suffix}", "").strip()
        if url:
            endpoints[service] = http_url(f"AWS_ENDPOINT_URL{suffix}", url)
    return AwsSettings(
        role_arn=role_arn,
        region=region,
        sts_region=default_region or region,
        session_name=session_name or default_session_name(Build.from_env(env)),
        duration_seconds=duration,
        endpoints=endpoints,
    )


def default_session_name(build: Build) -> str:
    """Names the build, so CloudTrail ties every call to it: ``bitbucket-<repo>-<build>``."""
    repo = build.repo_slug or "repo"
    tail = _SESSION_CHARS.sub("-", f"-{build.build_number or 'local'}")[:20]
    head = _SESSION_CHARS.sub("-", f"bitbucket-{repo}")[: 64 - len(tail)]
    return f"{head}{tail}"


def _gcp(variables: Mapping[str, Any]) -> GcpSettings:
    provider = value(variables, "GCP_WORKLOAD_IDENTITY_PROVIDER")
    if not provider:
        raise ConfigError(
            "GCP_WORKLOAD_IDENTITY_PROVIDER is required for gcp-sm: references",
            "set it to projects/<project number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>",
        )
    match = _WIF_PROVIDER.match(provider)
    if not match:
        raise ConfigError(
            f"GCP_WORKLOAD_IDENTITY_PROVIDER {provider!r} is not a workload identity provider name",
            "use projects/<project NUMBER, not id>/locations/global/workloadIdentityPools/<pool>/providers/<provider>",
        )
    service_account = value(variables, "GCP_SERVICE_ACCOUNT")
    if service_account and not _SERVICE_ACCOUNT.match(service_account):
        raise ConfigError(
            f"GCP_SERVICE_ACCOUNT {service_account!r} is not a service account e-mail",
            "use e.g. ci@my-project.iam.gserviceaccount.com",
        )
    audience = "//iam.googleapis.com/" + provider.removeprefix("//iam.googleapis.com/")
    return GcpSettings(
        audience=audience,
        project_number=match.group("number"),
        pool=match.group("pool"),
        provider=match.group("provider"),
        service_account=service_account,
        sts_url=http_url("GCP_STS_ENDPOINT", value(variables, "GCP_STS_ENDPOINT") or GCP_STS_DEFAULT),
        iam_credentials_url=http_url(
            "GCP_IAM_CREDENTIALS_ENDPOINT",
            value(variables, "GCP_IAM_CREDENTIALS_ENDPOINT") or GCP_IAM_CREDENTIALS_DEFAULT,
        ).rstrip("/"),
        secret_manager_url=http_url(
            "GCP_SECRET_MANAGER_ENDPOINT", value(variables, "GCP_SECRET_MANAGER_ENDPOINT") or GCP_SECRET_MANAGER_DEFAULT
        ).rstrip("/"),
    )


def _vault(variables: Mapping[str, Any]) -> VaultSettings:
    addr = value(variables, "VAULT_ADDR")
    if not addr:
        raise ConfigError(
            "VAULT_ADDR is required for vault: references",
            "set it to the Vault address, e.g. https://vault.example.com:8200",
        )
    role = value(variables, "VAULT_ROLE")
    if not role:
        raise ConfigError(
            "VAULT_ROLE is required for vault: references", "set it to the JWT auth role bound to this repository"
        )
    if not re.fullmatch(r"[\w.@-]{1,128}", role):
        raise ConfigError(
            f"VAULT_ROLE {role!r} is not a role name", "use the role's name as in 'vault write auth/jwt/role/<name>'"
        )
    auth_path = (value(variables, "VAULT_AUTH_PATH") or "jwt").strip("/")
    if auth_path.startswith("auth/"):
        auth_path = auth_path[len("auth/") :]
    if not _MOUNT.match(auth_path) or ".." in auth_path.split("/"):
        raise ConfigError(
            f"VAULT_AUTH_PATH {auth_path!r} is not a mount path",
            "use the path the JWT auth method is enabled at, e.g. 'jwt'",
        )
    namespace = value(variables, "VAULT_NAMESPACE")
    if namespace and not _MOUNT.match(namespace.strip("/")):
        raise ConfigError(f"VAULT_NAMESPACE {namespace!r} is not a namespace path", "use e.g. 'admin' or 'admin/ci'")
    return VaultSettings(
        addr=http_url("VAULT_ADDR", addr).rstrip("/"),
        role=role,
        auth_path=auth_path,
        namespace=namespace.strip("/") if namespace else None,
    )


def _exchange(variables: Mapping[str, Any]) -> ExchangeSettings:
    return ExchangeSettings(
        url=http_url(EXCHANGE_VARIABLE, value(variables, EXCHANGE_VARIABLE) or ""),
        audience=value(variables, "TOKEN_EXCHANGE_AUDIENCE"),
        scope=value(variables, "TOKEN_EXCHANGE_SCOPE"),
        client_id=value(variables, "TOKEN_EXCHANGE_CLIENT_ID"),
    )


def http_url(name: str, url: str) -> str:
    """An https:// URL (http:// only to this machine: the step token and credentials travel over it)."""
    return secure_url(name, url, "the step token or a credential")
