"""What the CLI deploys: a copy of the prefect.yaml with just the selected deployments, each tagged with
the commit and build and, when the file sets no version, versioned by the commit.

The copy lives in a temporary directory (the repository's file is never touched). CLI options could
not do this: with several deployments Prefect ignores them, and ``--tag``/``--description`` replace
the file's values. The checks here look at that copy before the CLI runs: a ``{{ $BITBUCKET_... }}``
placeholder in a pull step that this build does not set is an error (the worker would silently clone
the default branch instead), and a deployment without a pull step gets a warning.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pipe import console
from pipe.build import Build
from pipe.deploy.placeholders import placeholders
from pipe.deploy.project import DeploymentSpec, Project
from pipe.errors import DeployError
from pipe.secret import mask


def deploy_tags(build: Build) -> list[str]:
    """Tags that say which commit and build a deployment's code came from. Prefect adds a deployment's
    tags to each of its flow runs, so they differ from the ``commit:``/``build:`` tags ACTION=run puts on
    a run (the build that *started* it)."""
    tags = []
    if build.short_sha:
        tags.append(f"deploy-commit:{build.short_sha}")
    if build.build_number:
        tags.append(f"deploy-build:{build.build_number}")
    return tags


def derived_document(project: Project, selected: list[DeploymentSpec], build: Build) -> dict[str, Any]:
    document = copy.deepcopy(project.document)
    originals = project.document["deployments"]
    extra_tags = deploy_tags(build)
    entries = []
    for spec in selected:
        entry = copy.deepcopy(originals[spec.index])
        tags = entry.get("tags")
        if tags is None or isinstance(tags, list):  # a templated string is left to Prefect
            entry["tags"] = list(dict.fromkeys([*(tags or []), *extra_tags]))
        if entry.get("version") in (None, "") and build.commit_sha:
            entry["version"] = build.commit_sha[:8]
        entries.append(entry)
    document["deployments"] = entries
    return document


# The pipe's own credentials, by the variables that can hold them in the step or in the CLI's environment.
PIPE_CREDENTIALS = (
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "BITBUCKET_STEP_OIDC_TOKEN",
    "BITBUCKET_ACCESS_TOKEN",
    "ATLASSIAN_API_TOKEN",
    "BITBUCKET_APP_PASSWORD",
)


def refuse_credentials(project: Project, env: Mapping[str, str], cloud_env: Mapping[str, object]) -> None:
    """A ``{{ $NAME }}`` that names one of the pipe's credentials would be resolved by the CLI and stored,
    in plain text, in the deployment on the server (a description, a job variable, a pull step) — for
    anyone who can read deployments. Refused before anything is deployed."""
    names = placeholders(project.document)
    found = sorted(
        name
        for name in names
        if name in PIPE_CREDENTIALS or name in cloud_env or (name in env and mask(env[name]) != env[name])
    )
    if found:
        shown = ", ".join(f"{{{{ ${name} }}}}" for name in found)
        raise DeployError(
            f"{project.shown} uses {shown}, which would write the pipe's credential into the deployment on the server",
            "remove it; a flow that needs a secret reads it from a Prefect Secret block or its work pool, "
            "and the pipe's credential is for the pipe alone",
        )


def check_placeholders(
    project: Project, document: dict[str, Any], env: Mapping[str, str], step_env: Mapping[str, str]
) -> None:
    """A ``{{ $NAME }}`` the CLI cannot resolve stays as it is. In a pull step a worker would resolve it
    at run time, to nothing for a ``BITBUCKET_*`` variable — cloning the default branch instead of this
    commit — so that is an error; anywhere else a warning."""
    pull_names = placeholders(document.get("pull"))
    for entry in document["deployments"]:
        pull_names |= placeholders(entry.get("pull"))
    for name in sorted(placeholders(document) - set(env)):
        if name.startswith("BITBUCKET_") and name in pull_names:
            raise DeployError(
                f"a pull step in {project.shown} uses {{{{ ${name} }}}}, which this build does not set",
                f"use a Bitbucket variable every build sets (BITBUCKET_COMMIT), or remove {name} from the pull step",
            )
        secret = name in step_env
        reason = "is secret and is not passed on" if secret else "is not set in the pipe's environment"
        console.warning(
            f"{project.shown} uses {{{{ ${name} }}}}, which {reason}: Prefect keeps the placeholder as it is"
            + ("" if secret else f" (add {name} to the pipe's variables if the deploy needs it)")
        )


def warn_without_pull_steps(project: Project, selected: list[DeploymentSpec], document: dict[str, Any]) -> None:
    if "pull" in document and document["pull"] is not None:
        return
    for entry, spec in zip(document["deployments"], selected, strict=True):
        if entry.get("pull") is None and not (entry.get("build") or document.get("build")):
            console.warning(
                f"Deployment {spec.label} has no pull step: Prefect points it at {project.root}, which exists only "
                "during this build. Add a git_clone pull step pinned to {{ $BITBUCKET_COMMIT }} (README: Deploy from the commit)"
            )
