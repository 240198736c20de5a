"""Variables of the identity providers, merged into the pipe's schema (see ``pipe/config.py``).

Kept to plain data: ``pipe.config`` imports this module at start-up. Validation that a schema cannot
express (reference syntax, ARNs, URLs, which variables go together) lives in
:mod:`pipe.identity.settings` and runs only when an OIDC source is configured.
"""

from __future__ import annotations

from typing import Any

# Endpoint overrides for Google Cloud (boto3 has its own: AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>).
GCP_STS_DEFAULT = "https://sts.googleapis.com/v1/token"
GCP_IAM_CREDENTIALS_DEFAULT = "https://iamcredentials.googleapis.com"
GCP_SECRET_MANAGER_DEFAULT = "https://secretmanager.googleapis.com"

_REFERENCE = "'<scheme>:<reference>[#field]' with scheme aws-sm, aws-ssm, gcp-sm or vault"


def _string(hint: str, **rules: Any) -> dict[str, Any]:
    return {"type": "string", "required": False, "nullable": True, "meta": {"hint": hint}, **rules}


VARIABLES: dict[str, dict[str, Any]] = {
    # Where the Prefect credential lives; the step's OIDC token buys the access.
    "PREFECT_API_KEY_SECRET": _string(
        f"use {_REFERENCE}, e.g. 'aws-sm:prefect/ci#api_key' or 'vault:secret/data/prefect/ci#api_key'"
    ),
    "PREFECT_API_AUTH_STRING_SECRET": _string(
        f"use {_REFERENCE}, e.g. 'vault:secret/data/prefect/ci#auth_string'; the value must be user:password"
    ),
    # AWS (Secrets Manager, SSM Parameter Store)
    "AWS_OIDC_ROLE_ARN": _string(
        "use the ARN of the IAM role to assume, e.g. arn:aws:iam::123456789012:role/prefect-ci"
    ),
    "AWS_DEFAULT_REGION": _string("use the region of the secret, e.g. eu-west-1"),
    "AWS_ROLE_SESSION_NAME": _string(
        "use 2-64 characters of letters, digits and _+=,.@- (default: repository and build)"
    ),
    "AWS_ROLE_DURATION_SECONDS": {
        "type": "integer",
        "required": False,
        "nullable": True,
        "min": 900,
        "max": 43200,
        "meta": {"hint": "use a whole number of seconds between 900 and 43200 (default: the role's 3600)"},
    },
    # Google Cloud (Secret Manager through Workload Identity Federation)
    "GCP_WORKLOAD_IDENTITY_PROVIDER": _string(
        "use projects/<project number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>"
    ),
    "GCP_SERVICE_ACCOUNT": _string(
        "use the e-mail of the service account to impersonate, e.g. ci@proj.iam.gserviceaccount.com"
    ),
    "GCP_STS_ENDPOINT": _string(f"use the full token URL of Google STS (default {GCP_STS_DEFAULT})"),
    "GCP_IAM_CREDENTIALS_ENDPOINT": _string(
        f"use the base URL of the IAM Credentials API (default {GCP_IAM_CREDENTIALS_DEFAULT})"
    ),
    "GCP_SECRET_MANAGER_ENDPOINT": _string(
        f"use the base URL of the Secret Manager API (default {GCP_SECRET_MANAGER_DEFAULT})"
    ),
    # HashiCorp Vault / OpenBao (JWT auth)
    "VAULT_ADDR": _string("use the Vault address, e.g. https://vault.example.com:8200"),
    "VAULT_ROLE": _string("use the name of the JWT auth role bound to this repository"),
    "VAULT_AUTH_PATH": {
        "type": "string",
        "required": False,
        "nullable": True,
        "default": "jwt",
        "meta": {"hint": "use the mount path of the JWT auth method, e.g. 'jwt' or 'bitbucket'"},
    },
    "VAULT_NAMESPACE": _string("use the Vault Enterprise / OpenBao namespace, e.g. 'admin/ci'"),
    # RFC 8693 token exchange at an identity provider or broker; the access token is the Prefect credential.
    "TOKEN_EXCHANGE_URL": _string("use the https:// token endpoint of the identity provider"),
    "TOKEN_EXCHANGE_AUDIENCE": _string("use the audience the identity provider expects (RFC 8693 'audience')"),
    "TOKEN_EXCHANGE_SCOPE": _string("use space-separated scopes (RFC 8693 'scope')"),
    "TOKEN_EXCHANGE_CLIENT_ID": _string("use the client id registered at the identity provider"),
    # Set by Bitbucket when the step has `oidc: true`.
    "BITBUCKET_STEP_OIDC_TOKEN": _string("add 'oidc: true' to the step; Bitbucket sets this variable itself"),
}
