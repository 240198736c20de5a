"""Commit build statuses: ``POST /repositories/{ws}/{repo}/commit/{sha}/statuses/build``.

One status per deployment (``key``), updated in place from INPROGRESS to its final state; ``refname``
on pull-request builds so the status shows on the pull request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipe.bitbucket import fields
from pipe.bitbucket.verdict import Verdict
from pipe.build import Build
from pipe.outcome import RunInfo
from pipe.secret import mask

if TYPE_CHECKING:
    from pipe.preview.publish import Preview

KEY_PREFIX = "prefect"


def status_key(deployment_name: str) -> str:
    return fields.stable_id(KEY_PREFIX, deployment_name, fields.STATUS_KEY)


def path(build: Build) -> str:
    return f"{build.commit_path}/statuses/build"


def payload(build: Build, run: RunInfo, verdict: Verdict, detail: str | None = None) -> dict[str, Any]:
    description = f"Flow run {run.flow_run_name} {verdict.phrase}"
    if detail:
        description = f"{description}: {detail}"
    body: dict[str, Any] = {
        "key": status_key(run.deployment_name),
        "state": verdict.status_state,
        "name": fields.clip(f"Prefect {run.deployment_name}", fields.STATUS_NAME),
        "description": fields.clip(mask(description), fields.STATUS_DESCRIPTION),
        "url": _url(build, run.flow_run_url),
    }
    if build.refname:
        body["refname"] = build.refname
    return body


def preview_payload(build: Build, preview: Preview) -> dict[str, Any]:
    """A preview deployment (ACTION=preview without PREVIEW_RUN): SUCCESSFUL, linking to the deployment."""
    version = f" (version {preview.version})" if preview.version else ""
    body: dict[str, Any] = {
        "key": status_key(preview.name),
        "state": "SUCCESSFUL",
        "name": fields.clip(f"Prefect {preview.name}", fields.STATUS_NAME),
        "description": fields.clip(
            mask(f"Preview deployment {preview.name}{version} deployed"), fields.STATUS_DESCRIPTION
        ),
        "url": _url(build, preview.url),
    }
    if build.refname:
        body["refname"] = build.refname
    return body


def _url(build: Build, url: str) -> str:
    """Bitbucket needs a URL; a cut one would be broken, so the pipeline's page stands in."""
    return (
        fields.http_url(url, fields.STATUS_URL)
        or fields.http_url(build.results_url, fields.STATUS_URL)
        or f"https://bitbucket.org/{build.workspace}/{build.repo_slug}"
    )
