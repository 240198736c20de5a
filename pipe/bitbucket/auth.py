"""The Bitbucket credential, by the toolkit's ``resolve_auth`` conventions, without its exit-on-missing.

Precedence as in ``bitbucket_pipes_toolkit.Pipe.resolve_auth``: ``ATLASSIAN_ACCOUNT_EMAIL`` +
``ATLASSIAN_API_TOKEN`` (HTTP Basic), then ``BITBUCKET_ACCESS_TOKEN`` (Bearer), then the deprecated
``BITBUCKET_USERNAME`` + ``BITBUCKET_APP_PASSWORD`` (HTTP Basic). A missing credential is not an error
here: statuses are skipped and the Code Insights report goes through the Pipelines proxy.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipe.secret import Secret, register


@dataclass(frozen=True)
class BitbucketAuth:
    """A credential; ``source`` names the variables for people, the value never shows."""

    source: str
    _header: Secret = field(repr=False)
    deprecated: bool = False

    def header(self) -> str:
        """The ``Authorization`` header value."""
        return self._header.reveal()


@dataclass(frozen=True)
class AuthResolution:
    auth: BitbucketAuth | None = None
    # Why there is no credential, when a variable of a pair is set alone (said once in the build log).
    problem: str | None = None


def _basic(user: str, password: str) -> Secret:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    register(password, encoded)  # so the console masks either wherever it might appear
    return Secret(f"Basic {encoded}")


def _get(variables: Mapping[str, Any], name: str) -> str | None:
    value = variables.get(name)
    if isinstance(value, Secret):
        value = value.reveal()
    return value.strip() if isinstance(value, str) and value.strip() else None


def resolve(variables: Mapping[str, Any]) -> AuthResolution:
    email = _get(variables, "ATLASSIAN_ACCOUNT_EMAIL")
    api_token = _get(variables, "ATLASSIAN_API_TOKEN")
    token = _get(variables, "BITBUCKET_ACCESS_TOKEN")
    username = _get(variables, "BITBUCKET_USERNAME")
    app_password = _get(variables, "BITBUCKET_APP_PASSWORD")

    if email and api_token:
        return AuthResolution(BitbucketAuth("ATLASSIAN_ACCOUNT_EMAIL + ATLASSIAN_API_TOKEN", _basic(email, api_token)))
    if token:
        register(token)
        return AuthResolution(BitbucketAuth("BITBUCKET_ACCESS_TOKEN", Secret(f"Bearer {token}")))
    if username and app_password:
        auth = BitbucketAuth("BITBUCKET_USERNAME + BITBUCKET_APP_PASSWORD", _basic(username, app_password), True)
        return AuthResolution(auth)

    for first, second, a, b in (
        ("ATLASSIAN_ACCOUNT_EMAIL", "ATLASSIAN_API_TOKEN", email, api_token),
        ("BITBUCKET_USERNAME", "BITBUCKET_APP_PASSWORD", username, app_password),
    ):
        if bool(a) != bool(b):
            present, missing = (first, second) if a else (second, first)
            return AuthResolution(None, f"{present} is set without {missing}")
    return AuthResolution(None)
