"""Identity-first credentials (placeholder until the providers land)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipe.credentials import Credential


def is_configured(variables: Mapping[str, Any]) -> bool:
    return False


def obtain_credential(variables: Mapping[str, Any], env: Mapping[str, str]) -> Credential:
    raise NotImplementedError


def describe(variables: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    return []
