"""DRY_RUN behind the identity-aware gateway: the policy rule this repository, branch or environment needs.

A gateway (``python -m gateway``) serves the token exchange at ``<base>/token`` and the Prefect API at
``<base>/api``. When ``TOKEN_EXCHANGE_URL`` and ``PREFECT_API_URL`` point there, DRY_RUN prints a rule
to paste under ``rules:`` in the gateway's policy, pinned to the step token's repository and its
deployment environment (or branch), granting what the step does: ``read`` and ``run`` of the resolved
deployments (``deploy`` too for ACTION=deploy-and-run). No network call; the token is never shown.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipe.errors import IdentityError
from pipe.identity import oidc_token

if TYPE_CHECKING:
    from pipe.config import Config

DEFAULT_AUDIENCE_PREFIX = "ari:cloud:bitbucket::workspace/"


def behind_gateway(config: Config) -> bool:
    """``TOKEN_EXCHANGE_URL`` is ``<base>/token`` and ``PREFECT_API_URL`` is ``<base>/api``."""
    settings = config.identity.settings
    exchange = settings.exchange.url if settings and settings.exchange else None
    api = config.api_url
    if not exchange or not api:
        return False
    token_url, api_url = urlsplit(exchange), urlsplit(api.rstrip("/"))
    if (token_url.scheme, token_url.netloc) != (api_url.scheme, api_url.netloc):
        return False
    base = token_url.path.removesuffix("/token")
    return token_url.path.endswith("/token") and api_url.path == f"{base}/api"


def lines(config: Config, deployments: list[str]) -> list[str]:
    if not behind_gateway(config):
        return []
    try:
        token = oidc_token.peek(config.identity.step_token)
    except IdentityError:
        token = None
    repository = (token.repository_uuid if token else "") or "{repository-uuid}"
    when = {"repositoryUuid": repository}
    scope = f"repository {repository}"
    if token and token.environment_uuid:
        when["deploymentEnvironmentUuid"] = token.environment_uuid
        scope += f", deployment environment {token.environment_uuid}"
    elif token and token.branch:
        when["branchName"] = token.branch
        scope += f", branch {token.branch}"
    names = sorted(set(deployments)) or ["<flow>/<deployment>"]
    allow: dict[str, Any] = {"read": True, "run": names}
    if config.action == "deploy-and-run":
        allow["deploy"] = names
    out = [
        f"Gateway policy rule for this step ({scope}); add it under rules: in the gateway's policy:",
        f"  - name: {json.dumps(scope)}",
        f"    when: {json.dumps(when)}",
        f"    allow: {json.dumps(allow)}",
    ]
    audiences = token.audiences if token else []
    if not audiences or all(a.startswith(DEFAULT_AUDIENCE_PREFIX) for a in audiences):
        out.append(
            "The step token carries only the workspace's default audience: ask for the gateway's with "
            "`oidc: audiences: [<one of the policy's audiences>]` on the step."
        )
    return out
