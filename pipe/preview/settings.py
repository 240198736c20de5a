"""The preview variables (``PREVIEW_NAME``, ``PREVIEW_RUN``, ``PREVIEW_TTL_DAYS``, ``WORK_POOL_NAME``),
checked by :func:`pipe.config.load` against the action and the build: a preview outside a pull-request
build, or a clean-up with no way to tell which pull requests are closed, stops here, before anything
is sent anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipe.bitbucket.auth import AuthResolution
from pipe.build import Build
from pipe.errors import ConfigError
from pipe.preview.naming import DEFAULT_TEMPLATE, check_template
from pipe.urls import plain_http_to_remote
from pipe.values import parse_name

# Which actions each variable means something for: set with another action it is refused, not ignored.
APPLIES_TO = {
    "PREVIEW_NAME": ("preview", "cleanup-previews"),
    "PREVIEW_RUN": ("preview",),
    "PREVIEW_TTL_DAYS": ("cleanup-previews",),
    "WORK_POOL_NAME": ("preview",),
}
MAX_TTL_DAYS = 3650


@dataclass(frozen=True)
class PreviewSettings:
    name_template: str = DEFAULT_TEMPLATE  # PREVIEW_NAME
    run: bool = False  # PREVIEW_RUN
    ttl_days: int | None = None  # PREVIEW_TTL_DAYS
    work_pool_name: str | None = None  # WORK_POOL_NAME


def load(
    variables: Mapping[str, Any],
    env: Mapping[str, str],
    action: str,
    build: Build,
    auth: AuthResolution,
    api_url: str,
) -> PreviewSettings:
    """``api_url`` is BITBUCKET_API_URL, where the clean-up asks for the pull requests' states."""
    for name, actions in APPLIES_TO.items():
        if action not in actions and variables.get(name) not in (None, False, ""):
            shown = " or ".join(f"ACTION={a}" for a in actions)
            raise ConfigError(f"{name} applies to {shown} only, not ACTION={action}", f"remove {name} from this step")
    settings = PreviewSettings(
        name_template=check_template(variables.get("PREVIEW_NAME")),
        run=bool(variables.get("PREVIEW_RUN")),
        ttl_days=variables.get("PREVIEW_TTL_DAYS"),
        work_pool_name=parse_name("WORK_POOL_NAME", variables.get("WORK_POOL_NAME")),
    )
    if action == "preview":
        _check_preview_build(build)
    elif action == "cleanup-previews":
        for name in ("DEPLOYMENT", "DEPLOYMENTS"):
            if (env.get(name) or env.get(f"{name}_COUNT") or "").strip():
                raise ConfigError(
                    f"ACTION=cleanup-previews cleans up every preview of the repository; {name} does not apply",
                    f"remove {name} from this step",
                )
        _check_cleanup(settings, build, auth, api_url)
    return settings


def _check_preview_build(build: Build) -> None:
    if not build.pull_request_id:
        raise ConfigError(
            "ACTION=preview deploys a pull request's flows, but this is not a pull-request build (BITBUCKET_PR_ID "
            "is not set)",
            "run it in a step under 'pull-requests:' in bitbucket-pipelines.yml; for branch builds use ACTION=deploy",
        )
    if not build.pull_request_id.isdigit():
        raise ConfigError(
            "BITBUCKET_PR_ID is not a pull request number", "run the pipe in a Bitbucket pull-request build"
        )
    if not (build.repository and build.workspace and build.repo_slug and build.commit_sha):
        raise ConfigError(
            "ACTION=preview needs the repository and commit of the build (BITBUCKET_REPO_FULL_NAME, BITBUCKET_COMMIT)",
            "run the pipe in a Bitbucket pull-request build",
        )


def _check_cleanup(settings: PreviewSettings, build: Build, auth: AuthResolution, api_url: str) -> None:
    if not (build.repository and build.workspace and build.repo_slug):
        raise ConfigError(
            "ACTION=cleanup-previews needs the repository whose previews it cleans up (BITBUCKET_REPO_FULL_NAME)",
            "run the pipe in a Bitbucket Pipelines step of that repository",
        )
    if auth.auth is None and settings.ttl_days is None:
        why = f" ({auth.problem})" if auth.problem else ""
        raise ConfigError(
            f"ACTION=cleanup-previews cannot tell which pull requests are closed: no Bitbucket credential{why} and "
            "no PREVIEW_TTL_DAYS",
            "set BITBUCKET_ACCESS_TOKEN (a repository access token with pull-request read) or "
            "ATLASSIAN_ACCOUNT_EMAIL + ATLASSIAN_API_TOKEN as secured variables, or PREVIEW_TTL_DAYS to delete "
            "previews not updated for that many days",
        )
    if auth.auth is not None and plain_http_to_remote(api_url):
        raise ConfigError(
            "BITBUCKET_API_URL uses plain http:// to a remote host; the Bitbucket credential is not sent there",
            "use https://",
        )
