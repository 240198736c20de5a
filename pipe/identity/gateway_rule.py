"""The identity-aware gateway's policy, seen from the step: the rule this repository, branch or
environment needs (printed by DRY_RUN), and the gateway's denial read back into one line.

A gateway (``python -m gateway``) serves the token exchange at ``<base>/token`` and the Prefect API at
``<base>/api``. When ``TOKEN_EXCHANGE_URL`` and ``PREFECT_API_URL`` point there, DRY_RUN prints a rule
to paste under ``rules:`` in the gateway's policy, pinned to the step token's repository and its
deployment environment (or branch), granting what the step's ACTION does (:func:`rights`). No network
call; the token is never shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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
    allow = rights(config, sorted(set(deployments)) or ["<flow>/<deployment>"])
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


def rights(config: Config, names: list[str]) -> dict[str, Any]:
    """What ACTION needs of these deployments: ``read`` always; ``run`` to start or cancel runs; ``deploy``
    to create, update or delete deployments. The clean-up's names are every name a preview may have."""
    action = config.action
    if action == "cleanup-previews":
        template = config.preview.name_template
        names = ["*/" + template.format(deployment="*", pr="*", branch="*")]
    allow: dict[str, Any] = {"read": True}
    if action in ("run", "deploy-and-run", "cleanup-previews") or (action == "preview" and config.preview.run):
        allow["run"] = names
    if action in ("deploy", "deploy-and-run", "preview", "cleanup-previews"):
        allow["deploy"] = names
    return allow


# The gateway's 403 (gateway/app.py ``_denied``): the right it missed, the claims it saw, the rules that matched.
_DENIED = re.compile(
    r"denied: this request needs the right '(?P<right>[^']+)'; claims seen: (?P<claims>.*?); "
    r"(?:the rules matching them \((?P<rules>[^)]*)\) do not grant it|no rule matches them)"
)
_CLAIM = re.compile(r"(?P<name>\w+)=(?P<value>.*?)(?=, \w+=|$)")
# The claims a rule's ``when`` is written with; the build's and step's ids only identify this one build.
_RULE_CLAIMS = ("repositoryUuid", "deploymentEnvironmentUuid", "branchName")


@dataclass(frozen=True)
class Denial:
    """A right the gateway's policy did not grant this step."""

    right: str
    claims: str
    rules: str | None

    def message(self) -> str:
        matched = f"the rules matching them ({self.rules}) do not grant it" if self.rules else "no rule matches them"
        return f"the gateway denied this step the right '{self.right}' (claims: {self.claims}; {matched})"

    fix = "add a rule granting it for these claims to the gateway's policy (DRY_RUN: 'true' prints the rule this step needs)"


def denial(text: str) -> Denial | None:
    """The gateway's denial in a Prefect error's text (a 403 body, or ``prefect deploy``'s message)."""
    match = _DENIED.search(text)
    if not match:
        return None
    claims = {m["name"]: m["value"] for m in _CLAIM.finditer(match["claims"])}
    shown = ", ".join(f"{name}={claims[name]}" for name in _RULE_CLAIMS if name in claims)
    return Denial(match["right"], shown or match["claims"], match["rules"])
