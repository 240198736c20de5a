"""Variables of the Bitbucket reporter, merged into the pipe's schema."""

from typing import Any

VARIABLES: dict[str, dict[str, Any]] = {}
