"""The identity package's entry points as the tests call them: from the variables and environment a
step would have, through the same validation :func:`pipe.config.load` runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipe import identity
from pipe.credentials import Credential


def obtain_credential(variables: Mapping[str, Any], env: Mapping[str, str]) -> Credential:
    return identity.obtain_credential(identity.load(variables, env))


def describe(variables: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    return identity.describe(identity.load(variables, env))


def is_configured(variables: Mapping[str, Any]) -> bool:
    from pipe.identity.settings import configured_sources

    return bool(configured_sources(variables))
