"""Least-privilege trust conditions, written from the step token's own claims (for DRY_RUN).

Each provider gets a ready-to-paste snippet that pins the repository (``repositoryUuid``, or the
``sub`` prefix for AWS, which cannot see other claims) and, where the token has one, the deployment
environment or branch — so a pull-request build cannot read the key meant for deploys from main.
A warning line is added whenever the snippet cannot pin the repository: a trust without that
condition accepts every repository whose pipelines this issuer signs for.
"""

from __future__ import annotations

import json

from pipe.identity.oidc_token import StepToken
from pipe.identity.settings import AwsSettings, ExchangeSettings, GcpSettings, Settings, VaultSettings

WARNING = "WARNING:"
_ISSUER_TEMPLATE = "https://api.bitbucket.org/2.0/workspaces/<workspace>/pipelines-config/identity/oidc"


def lines(settings: Settings, token: StepToken | None) -> list[str]:
    claims = _Claims(token)
    out = _warnings(settings, claims)
    if settings.aws:
        out += _aws(settings.aws, claims)
    elif settings.gcp:
        out += _gcp(settings.gcp, settings, claims)
    elif settings.vault:
        out += _vault(settings.vault, settings, claims)
    elif settings.exchange:
        out += _exchange(settings.exchange, claims)
    return out


class _Claims:
    """The token's claims, or placeholders when there is no token to read them from."""

    def __init__(self, token: StepToken | None) -> None:
        self.present = token is not None
        self.issuer = (token.issuer if token else "") or _ISSUER_TEMPLATE
        self.audience = (
            token.audiences[0] if token and token.audiences else ""
        ) or "ari:cloud:bitbucket::workspace/<workspace-uuid>"
        self.repository = token.repository_uuid if token else ""
        self.subject = token.subject if token else ""
        self.branch = token.branch if token else ""
        self.environment = token.environment_uuid if token else ""

    @property
    def provider_path(self) -> str:  # how AWS names the provider and its condition keys
        return self.issuer.removeprefix("https://")

    @property
    def repository_or_placeholder(self) -> str:
        return self.repository or "{repository-uuid}"

    def scope_text(self) -> str:
        parts = [f"repository {self.repository_or_placeholder}"]
        if self.environment:
            parts.append(f"deployment environment {self.environment}")
        elif self.branch:
            parts.append(f"branch {self.branch}")
        return ", ".join(parts)


def _warnings(settings: Settings, claims: _Claims) -> list[str]:
    everyone = "a trust without it would accept every repository whose pipelines this issuer signs for"
    if not claims.present:
        return [
            f"{WARNING} no step OIDC token to read claims from (add `oidc: true` to the step); the snippet below has "
            f"placeholders — fill in the repository UUID, {everyone}"
        ]
    if not claims.repository:
        return [
            f"{WARNING} the step token has no repositoryUuid claim, so no condition below can pin this repository; {everyone}"
        ]
    if settings.aws and not claims.subject.startswith(f"{claims.repository}:"):
        return [
            f"{WARNING} the token's sub {claims.subject!r} does not start with its repositoryUuid, so an AWS sub "
            f"condition cannot pin this repository; {everyone}"
        ]
    return []


def _aws(aws: AwsSettings, claims: _Claims) -> list[str]:
    provider = claims.provider_path
    sub, scope = f"{claims.repository_or_placeholder}:*", f"repository {claims.repository_or_placeholder}"
    if claims.environment and claims.subject.startswith(f"{claims.repository}:{claims.environment}:"):
        sub, scope = (
            f"{claims.repository}:{claims.environment}:*",
            f"{scope}, deployment environment {claims.environment}",
        )
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{aws.account}:oidc-provider/{provider}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {f"{provider}:aud": claims.audience},
            "StringLike": {f"{provider}:sub": sub},
        },
    }
    return [
        f"Trust policy statement for {aws.role_arn} (least privilege: {scope}):",
        *json.dumps(statement, indent=2).splitlines(),
        f"Never drop the '{provider}:sub' condition. AWS sees only aud and sub: to keep pull-request builds away from a "
        "deploy key, run deploys in a deployment environment and match '{repositoryUuid}:{environmentUuid}:*'.",
    ]


def _gcp(gcp: GcpSettings, settings: Settings, claims: _Claims) -> list[str]:
    condition = f"assertion.repositoryUuid == '{claims.repository_or_placeholder}'"
    if claims.environment:
        condition += f" && assertion.deploymentEnvironmentUuid == '{claims.environment}'"
    elif claims.branch:
        condition += f" && assertion.branchName == '{claims.branch}'"
    member = (
        f"principalSet://iam.googleapis.com/projects/{gcp.project_number}/locations/global/workloadIdentityPools/"
        f"{gcp.pool}/attribute.repository_uuid/{claims.repository_or_placeholder}"
    )
    secret = settings.ref.gcp_version_name.split("/versions/")[0] if settings.ref else "<secret>"
    project, _, secret_id = secret.removeprefix("projects/").partition("/secrets/")
    out = [
        f"Workload identity provider {gcp.provider} (least privilege: {claims.scope_text()}):",
        f"  gcloud iam workload-identity-pools providers create-oidc {gcp.provider} --project={gcp.project_number} "
        f"--location=global --workload-identity-pool={gcp.pool} --issuer-uri='{claims.issuer}' "
        f"--allowed-audiences='{claims.audience}' "
        "--attribute-mapping='google.subject=assertion.sub,attribute.repository_uuid=assertion.repositoryUuid' "
        f'--attribute-condition="{condition}"',
    ]
    if gcp.service_account:
        out += [
            f"  gcloud iam service-accounts add-iam-policy-binding {gcp.service_account} "
            f"--role=roles/iam.workloadIdentityUser --member='{member}'",
            f"  gcloud secrets add-iam-policy-binding {secret_id} --project={project} "
            f"--role=roles/secretmanager.secretAccessor --member='serviceAccount:{gcp.service_account}'",
        ]
    else:
        out.append(
            f"  gcloud secrets add-iam-policy-binding {secret_id} --project={project} "
            f"--role=roles/secretmanager.secretAccessor --member='{member}'"
        )
    out.append(
        "Never leave the attribute condition empty: the provider would accept every repository of the workspace."
    )
    return out


def _vault(vault: VaultSettings, settings: Settings, claims: _Claims) -> list[str]:
    bound_claims = {"repositoryUuid": claims.repository_or_placeholder}
    if claims.environment:
        bound_claims["deploymentEnvironmentUuid"] = claims.environment
    elif claims.branch:
        bound_claims["branchName"] = claims.branch
    policy = f"{vault.role}-read"
    path = settings.ref.path if settings.ref else "secret/data/prefect/ci"
    role = {
        "role_type": "jwt",
        "user_claim": "sub",
        "bound_audiences": [claims.audience],
        "bound_claims": bound_claims,
        "token_policies": [policy],
        "token_ttl": "5m",
        "token_max_ttl": "15m",
    }
    return [
        f"Vault role '{vault.role}' (least privilege: {claims.scope_text()}):",
        f"  vault write auth/{vault.auth_path}/config oidc_discovery_url='{claims.issuer}' bound_issuer='{claims.issuer}'",
        f'  echo \'path "{path}" {{ capabilities = ["read"] }}\' | vault policy write {policy} -',
        f"  vault write auth/{vault.auth_path}/role/{vault.role} - <<'EOF'",
        *("  " + line for line in json.dumps(role, indent=2).splitlines()),
        "  EOF",
        "Never drop bound_claims.repositoryUuid: bound_audiences alone accepts every repository of the workspace.",
    ]


def _exchange(exchange: ExchangeSettings, claims: _Claims) -> list[str]:
    required = [
        f"iss = {claims.issuer}",
        f"aud = {claims.audience}",
        f"repositoryUuid = {claims.repository_or_placeholder}",
    ]
    if claims.environment:
        required.append(f"deploymentEnvironmentUuid = {claims.environment}")
    elif claims.branch:
        required.append(f"branchName = {claims.branch}")
    return [
        f"Token-exchange policy at {exchange.url} (least privilege: {claims.scope_text()}): accept subject tokens only with "
        + ", ".join(required),
    ]
