"""Identity first: the step's OIDC token buys a short-lived Prefect credential.

Prefect Cloud accepts only API keys, so the pipe trades the step's OIDC token for a short-lived
credential at a system that trusts it (AWS, Google Cloud, Vault/OpenBao, or any RFC 8693 token
exchange), reads the Prefect credential from that system's secret store, and revokes what can be
revoked when the run ends. The story, in order:

1. validate the identity variables (:mod:`.settings`, from :func:`pipe.config.load` through :func:`load`)
   — a :class:`~pipe.errors.ConfigError` names the variable;
2. read the step token (:mod:`.oidc_token`) — missing means the step lacks ``oidc: true``;
3. exchange it and read the secret with the provider's own library (:mod:`.aws`, :mod:`.gcp`,
   :mod:`.vault`, :mod:`.token_exchange`), imported only now so the plain path stays fast.

This package must stay cheap to import: ``pipe.config`` imports it at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipe.credentials import Credential
    from pipe.identity.settings import Settings
    from pipe.secret import Secret

__all__ = ["Identity", "describe", "load", "obtain_credential"]


@dataclass(frozen=True)
class Identity:
    """The identity input of the step: where the credential comes from (``None``: no OIDC source is
    configured) and the step's OIDC token as Bitbucket set it (not yet decoded)."""

    settings: Settings | None = None
    step_token: Secret | None = None

    @property
    def configured(self) -> bool:
        return self.settings is not None


def load(variables: Mapping[str, Any], env: Mapping[str, str]) -> Identity:
    """Validate the identity variables (``variables`` as the schema validated them, ``env`` for the
    ones Bitbucket or AWS conventions set). Raises :class:`~pipe.errors.ConfigError`."""
    from pipe.identity import oidc_token, settings

    configured = settings.configured_sources(variables)
    return Identity(
        settings=settings.load(variables, env) if configured else None,
        step_token=oidc_token.raw(variables, env),
    )


def obtain_credential(identity: Identity) -> Credential:
    """Exchange the step token and fetch the Prefect credential.

    Raises :class:`~pipe.errors.IdentityError` for a failed hop. The caller must ``close()`` the
    credential when the run ends (it revokes the Vault token and removes private files; both also
    happen at interpreter exit as a safety net).
    """
    from pipe.identity import oidc_token

    config = identity.settings
    assert config is not None, "obtain_credential needs a configured identity"
    token = oidc_token.read(identity.step_token)
    if config.provider == "aws":
        from pipe.identity import aws as provider
    elif config.provider == "gcp":
        from pipe.identity import gcp as provider  # type: ignore[no-redef]
    elif config.provider == "vault":
        from pipe.identity import vault as provider  # type: ignore[no-redef]
    else:
        from pipe.identity import token_exchange as provider  # type: ignore[no-redef]
    return provider.obtain(config, token)


def describe(identity: Identity) -> list[str]:
    """The identity picture for DRY_RUN: where the credential would come from, the step token's
    non-secret claims (decoded without verification — never the token itself), and a least-privilege
    trust condition for the configured provider, with a ``WARNING:`` line where it could not pin the
    repository. Makes no network call.
    """
    from pipe.errors import IdentityError
    from pipe.identity import oidc_token, trust

    problems = []
    try:
        token = oidc_token.peek(identity.step_token)
    except IdentityError as exc:  # a malformed token: say so, and describe the rest
        token, problems = None, [f"{trust.WARNING} {exc}"]
    claims = [f"Step OIDC token claims (not verified here): {token.summary()}"] if token else []
    config = identity.settings
    if config is None:
        return claims + problems
    return [
        f"Prefect credential: {config.variable} via {_hop(config)}",
        *claims,
        *problems,
        *trust.lines(config, token),
    ]


def _hop(config: Settings) -> str:
    if config.aws:
        return f"AWS STS AssumeRoleWithWebIdentity ({config.aws.role_arn}), then {config.ref} in {config.aws.region}"
    if config.gcp:
        via = f", impersonating {config.gcp.service_account}" if config.gcp.service_account else ""
        return f"Google workload identity federation ({config.gcp.audience}{via}), then {config.ref}"
    if config.vault:
        return f"Vault JWT login at {config.vault.login_url} (role '{config.vault.role}'), then {config.ref}"
    assert config.exchange is not None
    return f"RFC 8693 token exchange at {config.exchange.url}"
