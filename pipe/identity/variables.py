"""Variables of the identity providers, merged into the pipe's schema."""

from typing import Any

VARIABLES: dict[str, dict[str, Any]] = {}
