"""What makes a deployment a preview of this repository's pull request: the tag ``preview``, the
labels naming the repository and the pull request, and a name the ``PREVIEW_NAME`` template made —
clean-up needs all three before it touches a deployment."""

from __future__ import annotations

from typing import Any

from pipe.build import Build
from pipe.preview.naming import pull_request_of

TAG = "preview"
REPOSITORY_LABEL = "bitbucket.repository"
PULL_REQUEST_LABEL = "bitbucket.pull_request"


def tags(build: Build) -> list[str]:
    """``preview``, ``pr:<id>``, ``branch:<source branch>`` and ``repo:<workspace/slug>`` (the CLI deploys
    tags, not labels: this one tells whose a preview is until its labels are set)."""
    marks = [TAG, f"pr:{build.pull_request_id}"]
    if build.branch:
        marks.append(f"branch:{build.branch}")
    marks.append(f"repo:{build.repository}")
    return marks


def labels(build: Build) -> dict[str, str]:
    """The build's labels (repository, pull request, commit, build, branch, pipeline link)."""
    return build.labels()


def preview_of(deployment: Any, repository: str, template: str) -> str | None:
    """The pull request ``deployment`` is a preview of, when it is one of ``repository``'s: tagged
    ``preview`` and ``pr:<id>``, labelled with the repository and that pull request, named by the
    template for it. None for anything else."""
    found = pull_request_of(template, str(deployment.name))
    deployment_tags = list(getattr(deployment, "tags", None) or [])
    deployment_labels = dict(getattr(deployment, "labels", None) or {})
    if found is None or TAG not in deployment_tags or f"pr:{found}" not in deployment_tags:
        return None
    if deployment_labels.get(REPOSITORY_LABEL) != repository:
        return None
    if str(deployment_labels.get(PULL_REQUEST_LABEL)) != found:
        return None
    return found


def is_own_preview(deployment: Any, build: Build, template: str) -> bool:
    """Whether an existing deployment under a preview's name is this pull request's preview, which a new
    commit updates. One whose labels were never set (a step stopped between deploying and labelling)
    counts when its tags name this repository, pull request and branch."""
    repository = build.repository or ""
    if preview_of(deployment, repository, template) == build.pull_request_id:
        return True
    deployment_labels = dict(getattr(deployment, "labels", None) or {})
    deployment_tags = set(getattr(deployment, "tags", None) or [])
    return (
        REPOSITORY_LABEL not in deployment_labels
        and set(tags(build)) <= deployment_tags
        and pull_request_of(template, str(deployment.name)) == build.pull_request_id
    )
