"""Prefect's template syntax in a prefect.yaml: ``{{ $NAME }}`` (an environment variable),
``{{ prefect.blocks.<type>.<name> }}`` and ``{{ prefect.variables.<name> }}`` (objects on the server),
and ``{{ <step-id>.<field> }}`` (a build or push step's output).

Prefect resolves environment variables from the CLI's environment when it reads the file; the pipe
resolves them the same way where it needs a value before the CLI runs (deployment names, entrypoints,
work pools, versions, schedules) and lists every placeholder to check it before anything is deployed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# Prefect's template syntax for environment variables: {{ $NAME }}.
_ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Any placeholder, with the characters Prefect's own pattern allows in its name.
_PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-\[\]$]+)\s*\}\}")
BLOCKS = "prefect.blocks."
VARIABLES = "prefect.variables."


def strings(value: Any) -> Iterator[str]:
    """Every string in ``value`` (a string, or a YAML mapping or list, searched through)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def placeholders(value: Any) -> set[str]:
    """The environment variables ``value`` names as ``{{ $NAME }}``."""
    return {name for text in strings(value) for name in _ENV_PLACEHOLDER.findall(text)}


def names(value: Any) -> set[str]:
    """Every placeholder's name in ``value``: ``$NAME``, ``prefect.blocks.secret.x``, ``build-image.image``."""
    return {name for text in strings(value) for name in _PLACEHOLDER.findall(text)}


def block_references(value: Any) -> set[tuple[str, str]]:
    """``(block type slug, block name)`` of each ``{{ prefect.blocks.<type>.<name>[.<field>] }}``."""
    found = set()
    for name in names(value):
        if name.startswith(BLOCKS):
            parts = name[len(BLOCKS) :].split(".", 2)
            if len(parts) >= 2:
                found.add((parts[0], parts[1]))
    return found


def variable_references(value: Any) -> set[str]:
    """The name of each ``{{ prefect.variables.<name> }}``."""
    return {name[len(VARIABLES) :] for name in names(value) if name.startswith(VARIABLES)}


def resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """Prefect's ``{{ $NAME }}`` substitution for one string (unknown names stay as they are)."""
    if not isinstance(value, str):
        return value
    return _ENV_PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def resolve_env_all(value: Any, env: Mapping[str, str]) -> Any:
    """:func:`resolve_env` through a YAML mapping or list."""
    if isinstance(value, dict):
        return {key: resolve_env_all(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env_all(item, env) for item in value]
    return resolve_env(value, env)


def templated(value: Any) -> bool:
    """Whether ``value`` still holds a placeholder (resolved by Prefect only at deploy time)."""
    return any("{{" in text for text in strings(value))
