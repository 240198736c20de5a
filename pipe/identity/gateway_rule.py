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
from pipe.secret import Secret

if TYPE_CHECKING:
    from pipe.config import Config

DEFAULT_AUDIENCE_PREFIX = "ari:cloud:bitbucket::workspace/"


def behind_gateway(config: Config) -> bool:
    """``TOKEN_EXCHANGE_URL`` is ``<base>/token`` and ``PREFECT_API_URL`` is ``<base>/api``, or the step's
    token is the password of the auth string (``PREFECT_API_AUTH_STRING=bearer:<token>``)."""
    if _bearer_token(config):
        return True
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


def _bearer_token(config: Config) -> Secret | None:
    user, _, password = config.auth_string.reveal().partition(":") if config.auth_string else ("", "", "")
    return Secret(password) if user.lower() == "bearer" and password else None


def step_globs(config: Config) -> list[str] | None:
    """The deployments this step names, as the policy's globs, known before anything is called; None
    when a deployment is given by id (its name is known once it is read)."""
    if any(target.ref.is_id for target in config.targets):
        return None
    if not config.deploys:
        return [literal(target.ref.text) for target in config.targets]
    # DEPLOYMENT selects deployments of the prefect.yaml by name or glob; unset, all of them.
    globs = [target.ref.text if "/" in target.ref.text else f"*/{target.ref.text}" for target in config.targets]
    if config.action != "preview":
        return globs or ["*"]
    from pipe.preview.naming import render

    build = config.build
    pr = build.pull_request_id or ""
    return [
        f"{flow}/{render(config.preview.name_template, name, pr, build.branch)}"
        for flow, _, name in (glob.partition("/") for glob in globs or ["*/*"])
    ]


def lines(config: Config, deployments: list[str]) -> list[str]:
    """The rule to paste, granting this step's ACTION on ``deployments`` (the policy's globs)."""
    if not behind_gateway(config):
        return []
    try:
        token = oidc_token.peek(config.identity.step_token or _bearer_token(config))
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
    out = [
        f"Gateway policy rule for this step ({scope}, ACTION={config.action}); add it under rules: in the gateway's "
        "policy:",
        f"  - name: {json.dumps(f'{scope}: {config.action}')}",
        f"    when: {json.dumps(when)}",
        f"    allow: {json.dumps(rights(config, names))}",
    ]
    audiences = token.audiences if token else []
    if not audiences or all(a.startswith(DEFAULT_AUDIENCE_PREFIX) for a in audiences):
        out.append(
            "The step token carries only the workspace's default audience: ask for the gateway's with "
            "`oidc: audiences: [<one of the policy's audiences>]` on the step."
        )
    return out


def rights(config: Config, names: list[str]) -> dict[str, Any]:
    """What ACTION needs of these deployments (globs): ``read`` always; ``run`` to start or cancel runs;
    ``deploy`` to create, update or delete deployments. The clean-up's are every name a preview may have."""
    cleanup = config.action == "cleanup-previews"
    if cleanup:
        template = config.preview.name_template
        names = ["*/" + literal(template).format(deployment="*", pr="*", branch="*")]
    allow: dict[str, Any] = {"read": True}
    if config.action in ("run", "deploy-and-run") or config.preview.run or cleanup:
        allow["run"] = names
    if config.deploys or cleanup:
        allow["deploy"] = names
    return allow


def literal(name: str) -> str:
    """A name as a policy glob that matches it alone (the policy matches with fnmatch)."""
    return re.sub(r"([\[\]?*])", r"[\1]", name)


# The gateway's 403 (gateway/app.py ``_denied``) as ``prefect deploy`` prints it: the right it missed
# (quoted by Python's repr), the claims it saw, the rules that matched.
_DENIED = re.compile(
    r"denied: this request needs the right (?P<q>['\"])(?P<right>.*?)(?P=q); claims seen: (?P<claims>.*?); "
    r"(?:the rules matching them \((?P<rules>.*?)\) do not grant it|no rule matches them); add a rule"
)
_CLAIM = re.compile(r"(?P<name>\w+)=(?P<value>.*?)(?=, \w+=|$)")
# The claims a rule's ``when`` is written with; the build's and step's ids only identify this one build.
_RULE_CLAIMS = ("repositoryUuid", "deploymentEnvironmentUuid", "branchName")
_NOT_SERVED = "none: "  # gateway/authorize.py: what no rule can grant


@dataclass(frozen=True)
class Denial:
    """A right the gateway's policy did not grant this step."""

    right: str
    claims: dict[str, str]
    rules: list[str]

    def message(self) -> str:
        if self.right.startswith(_NOT_SERVED):
            return f"the gateway does not serve this request ({self.right.removeprefix(_NOT_SERVED)})"
        shown = ", ".join(f"{name}={self.claims[name]}" for name in _RULE_CLAIMS if name in self.claims)
        matched = (
            f"the rules matching them ({', '.join(self.rules)}) do not grant it"
            if self.rules
            else "no rule matches them"
        )
        return f"the gateway denied this step the right '{self.right}' (claims: {shown or 'none'}; {matched})"

    @property
    def fix(self) -> str:
        if self.right.startswith(_NOT_SERVED):
            return "do this with the Prefect server's own credential, outside the gateway"
        return "add a rule granting it for these claims to the gateway's policy (DRY_RUN: 'true' prints the rule this step needs)"


def denial(body: object) -> Denial | None:
    """The gateway's denial: its 403 answer (``missing_right``, ``claims``, ``rules``), or the text of one
    (``prefect deploy``'s message)."""
    if isinstance(body, dict):
        right, claims, rules = body.get("missing_right"), body.get("claims"), body.get("rules")
        if isinstance(right, str) and isinstance(claims, dict) and isinstance(rules, list):
            return Denial(right, {str(k): str(v) for k, v in claims.items()}, [str(rule) for rule in rules])
        return None
    match = _DENIED.search(str(body))
    if not match:
        return None
    claims = {m["name"]: m["value"] for m in _CLAIM.finditer(match["claims"])}
    return Denial(match["right"], claims, [match["rules"]] if match["rules"] else [])
