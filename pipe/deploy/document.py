"""What the CLI deploys: a copy of the prefect.yaml with just the selected deployments, each tagged with
the commit and build and, when the file sets no version, versioned by the commit.

The copy lives in a temporary directory (the repository's file is never touched). CLI options could
not do this: with several deployments Prefect ignores them, and ``--tag``/``--description`` replace
the file's values. Checked here before the CLI runs: a placeholder that would write the pipe's
credential into a deployment is refused, and pull steps that point at what exists only during this
build, or follow a branch rather than this commit, get a warning.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pipe import console
from pipe.build import Build
from pipe.credentials import Credential
from pipe.deploy.environment import is_pipe_credential
from pipe.deploy.placeholders import names, placeholders, resolve_env_all, strings
from pipe.deploy.project import DeploymentSpec, Project
from pipe.errors import DeployError


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


def refuse_credentials(project: Project, step_env: Mapping[str, str], credential: Credential) -> None:
    """A ``{{ $NAME }}`` that names one of the pipe's credentials would be resolved by the CLI and stored,
    in plain text, in the deployment on the server (a description, a job variable, a pull step) — for
    anyone who can read deployments. Refused before anything is deployed."""
    own = [value.reveal() for value in credential.cloud_env.values()]
    if credential.value:
        own.append(credential.value.reveal())
    found = sorted(
        name
        for name in placeholders(project.document)
        if is_pipe_credential(name)
        or name in credential.cloud_env
        or any(value and value in step_env.get(name, "") for value in own)
    )
    if found:
        shown = ", ".join(f"{{{{ ${name} }}}}" for name in found)
        raise DeployError(
            f"{project.shown} uses {shown}, which would write the pipe's credential into the deployment on the server",
            "remove it; a flow that needs a secret reads it from a Prefect Secret block or its work pool, "
            "and the pipe's credential is for the pipe alone",
        )


def warn_about_pull_steps(
    project: Project, selected: list[DeploymentSpec], document: dict[str, Any], env: Mapping[str, str], build: Build
) -> None:
    """A deployment's pull steps say where its runs get the code. Warned about: anything that exists
    only during this build (the clone, a build step's temporary clone), and a ``git_clone`` that follows
    a branch while the deployment is tagged and versioned with this commit."""
    root = str(project.root)
    for entry, spec in zip(document["deployments"], selected, strict=True):
        if (entry["pull"] if "pull" in entry else document.get("pull")) == []:
            continue  # explicitly none: the worker runs the flow where it stands
        pull = entry.get("pull") or document.get("pull")  # Prefect's order: a null falls back to the file's
        build_steps = entry.get("build") if "build" in entry else document.get("build")
        steps = [step for step in build_steps or [] if isinstance(step, dict)]
        if not pull:
            if not _default_pull_in_image(steps, entry):
                console.warning(
                    f"Deployment {spec.label} has no pull step: Prefect points it at {root}, which exists only "
                    "during this build. Add a git_clone pull step pinned to {{ $BITBUCKET_COMMIT }} "
                    "(README: Deploy from the commit)"
                )
            continue
        resolved = resolve_env_all(pull, env)
        temporary = {f"{{{{ {name} }}}}" for name in names(pull) if name.split(".")[0] in _clone_step_ids(steps)}
        here = {text for text in strings(resolved) if text == root or text.startswith(root + "/")}
        if temporary or here:
            console.warning(
                f"Deployment {spec.label}'s pull steps point at {', '.join(sorted(temporary | here))}, which "
                "exists only during this build: its runs will not find the code there. Pull from the repository "
                "(a git_clone pull step pinned to {{ $BITBUCKET_COMMIT }}) or run an image a push step pushed"
            )
        for step in resolved if isinstance(resolved, list) else []:
            for key, args in step.items() if isinstance(step, dict) else []:
                if key.endswith("git_clone") and isinstance(args, dict) and not args.get("commit_sha"):
                    branch = args.get("branch")
                    follows = f"branch {branch!r}" if branch else "the repository's default branch"
                    commit = build.short_sha or "this commit"
                    console.warning(
                        f"Deployment {spec.label}'s git_clone pull step follows {follows}, not commit {commit}: its "
                        f"runs take what the branch holds when they start, while its deploy-commit tag and version "
                        f"name {commit}. Add commit_sha: '{{{{ $BITBUCKET_COMMIT }}}}' to run this commit "
                        "(README: Deploy from the commit)"
                    )


def _default_pull_in_image(steps: list[dict[str, Any]], entry: dict[str, Any]) -> bool:
    """Whether Prefect's own pull step for a deployment without one points into an image, not the clone:
    a ``build_docker_image`` step with ``dockerfile: auto``, or a job image and no Docker build."""
    docker = [args for step in steps for key, args in step.items() if key.endswith("build_docker_image")]
    if docker:
        return any(isinstance(args, dict) and args.get("dockerfile") == "auto" for args in docker)
    pool = entry.get("work_pool")
    job = pool.get("job_variables") if isinstance(pool, dict) else None
    return isinstance(job, dict) and bool(job.get("image"))


def _clone_step_ids(steps: list[dict[str, Any]]) -> set[str]:
    """Ids of build steps that clone into a temporary directory (``git_clone``), whose output a pull step
    could name."""
    return {
        str(args["id"])
        for step in steps
        for key, args in step.items()
        if key.endswith("git_clone") and isinstance(args, dict) and args.get("id")
    }
