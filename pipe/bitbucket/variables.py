"""Variables of the Bitbucket reporter, merged into the pipe's schema (README's Variables table mirrors them).

Kept import-cheap: ``pipe.config`` imports this module at start-up. The credential names and their
precedence follow the toolkit's ``Pipe.resolve_auth`` (Atlassian API token, then access token, then the
deprecated app password).
"""

from __future__ import annotations

from typing import Any

DEFAULT_API_URL = "https://api.bitbucket.org/2.0"
# Where a pipe's container reaches the Pipelines auth proxy: the toolkit's CodeInsights uses
# host.docker.internal:29418 for pipes (a script step in the build container itself would use
# localhost:29418).
DEFAULT_PIPELINES_PROXY = "http://host.docker.internal:29418"
# http(s)://host[:port][/path] without user-info or spaces: a credential never rides in a URL here.
_HTTP_URL = r"^https?://[^\s/@]+(/\S*)?$"


def _string(hint: str, **rules: Any) -> dict[str, Any]:
    return {"type": "string", "required": False, "nullable": True, "meta": {"hint": hint}, **rules}


VARIABLES: dict[str, dict[str, Any]] = {
    "REPORT": {
        "type": "boolean",
        "required": False,
        "default": True,
        "meta": {"hint": "use true or false"},
    },
    "BITBUCKET_API_URL": _string(
        "set it to the Bitbucket API base URL, e.g. https://api.bitbucket.org/2.0",
        default=DEFAULT_API_URL,
        empty=False,
        regex=_HTTP_URL,
    ),
    "BITBUCKET_ACCESS_TOKEN": _string(
        "set it as a secured variable holding a repository access token (scope: repository:read)"
    ),
    "ATLASSIAN_ACCOUNT_EMAIL": _string("set it to the email of the Atlassian account that owns ATLASSIAN_API_TOKEN"),
    "ATLASSIAN_API_TOKEN": _string("set it as a secured variable holding an Atlassian API token with Bitbucket scopes"),
    "BITBUCKET_USERNAME": _string("deprecated: use ATLASSIAN_ACCOUNT_EMAIL and ATLASSIAN_API_TOKEN"),
    "BITBUCKET_APP_PASSWORD": _string("deprecated: use ATLASSIAN_ACCOUNT_EMAIL and ATLASSIAN_API_TOKEN"),
    "BITBUCKET_PIPELINES_PROXY": _string(
        "set it to the Pipelines auth proxy, e.g. http://host.docker.internal:29418",
        default=DEFAULT_PIPELINES_PROXY,
        empty=False,
        regex=_HTTP_URL,
    ),
}
