"""Prefect's template syntax for environment variables in a prefect.yaml: ``{{ $NAME }}``.

Prefect resolves these from the CLI's environment when it reads the file; the pipe resolves them the
same way where it needs a value before the CLI runs (deployment names, entrypoints, work pools,
versions) and lists them to decide which variables the CLI gets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Prefect's template syntax for environment variables: {{ $NAME }}.
_ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def placeholders(value: Any) -> set[str]:
    """The variable names ``value`` (a string, or a YAML mapping or list, searched through) names."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(_ENV_PLACEHOLDER.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            found |= placeholders(item)
    elif isinstance(value, list):
        for item in value:
            found |= placeholders(item)
    return found


def resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """Prefect's ``{{ $NAME }}`` substitution for one string (unknown names stay as they are)."""
    if not isinstance(value, str):
        return value
    return _ENV_PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(0)), value)
