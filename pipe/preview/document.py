"""The preview entries of the prefect.yaml copy the CLI deploys: each selected deployment renamed by
``PREVIEW_NAME``, versioned and pinned to the commit, never running by itself (no schedules, no
triggers), one run at a time, tagged, and on the pool, queue and job variables the step names."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipe import console
from pipe.config import Config
from pipe.deploy.placeholders import resolve_env
from pipe.deploy.project import DeploymentSpec
from pipe.errors import DeployError
from pipe.preview import marks
from pipe.preview.naming import render
from pipe.remote_text import one_line

CONCURRENCY_LIMIT = 1


def renamed(selected: list[DeploymentSpec], config: Config) -> list[DeploymentSpec]:
    """The selected deployments under their preview names (and WORK_POOL_NAME's pool)."""
    build = config.build
    pr = build.pull_request_id or ""
    previews = [
        dataclasses.replace(
            spec,
            name=render(config.preview.name_template, spec.name, pr, build.branch),
            work_pool=config.preview.work_pool_name or spec.work_pool,
        )
        for spec in selected
    ]
    seen: dict[str, DeploymentSpec] = {}
    for spec in previews:
        if spec.label in seen:
            raise DeployError(
                f"PREVIEW_NAME {config.preview.name_template!r} gives {seen[spec.label].name!r} and another selected "
                f"deployment the same preview name {spec.label!r}",
                "put {deployment} in PREVIEW_NAME",
            )
        seen[spec.label] = spec
    return previews


def preview_document(
    document: dict[str, Any], previews: list[DeploymentSpec], config: Config, env: Mapping[str, str]
) -> dict[str, Any]:
    """``document`` (the derived copy: the selected entries, in order) with each entry made a preview;
    ``env`` resolves the ``{{ $NAME }}`` of a pull step's repository."""
    build = config.build
    result = copy.deepcopy(document)
    for entry, spec in zip(result["deployments"], previews, strict=True):
        entry["name"] = spec.name
        if build.commit_sha:
            entry["version"] = build.commit_sha[:8]
        entry.pop("schedule", None)
        entry["schedules"] = []  # a preview never runs by itself
        entry["triggers"] = []
        entry["concurrency_limit"] = CONCURRENCY_LIMIT
        tags = entry.get("tags")
        entry["tags"] = list(dict.fromkeys([*marks.tags(build), *(tags if isinstance(tags, list) else [])]))
        pool = _work_pool(entry.get("work_pool"), config)
        if pool is not None:  # none at all: PREFECT_DEPLOYMENTS_DEFAULT_WORK_POOL_NAME's pool
            entry["work_pool"] = pool
        pull = entry["pull"] if entry.get("pull") is not None else result.get("pull")
        if isinstance(pull, list) and build.commit_sha:
            entry["pull"] = pinned(pull, build.commit_sha, lambda repository: _is_this(repository, config, env))
    return result


def pinned(pull: list[Any], commit_sha: str, is_this: Callable[[Any], bool]) -> list[Any]:
    """Pull steps whose ``git_clone`` of this repository checks out ``commit_sha`` (a branch would take
    what it holds later). A clone of another repository (a shared library) is left as it is."""
    steps = copy.deepcopy(pull)
    for step in steps:
        for key, args in step.items() if isinstance(step, dict) else []:
            if not (key.endswith("git_clone") and isinstance(args, dict)):
                continue
            if not is_this(args.get("repository")):
                console.info(
                    f"A git_clone pull step clones {one_line(str(args.get('repository')))}, not this repository: "
                    "the previews take it as the prefect.yaml says"
                )
                continue
            args.pop("branch", None)  # Prefect refuses a branch together with a commit
            args["commit_sha"] = commit_sha
    return steps


def _is_this(repository: Any, config: Config, env: Mapping[str, str]) -> bool:
    """Whether a git_clone's ``repository`` is the repository being built: its clone, its HTTP origin, or
    a URL ending in its ``workspace/slug`` (https or ssh)."""
    if not isinstance(repository, str):
        return False
    text = str(resolve_env(repository, env)).strip().rstrip("/").removesuffix(".git").lower()
    full_name = (config.build.repository or "").lower()
    origin = env.get("BITBUCKET_GIT_HTTP_ORIGIN", "").strip().rstrip("/").removesuffix(".git").lower()
    clone = config.deploy.clone_dir.resolve()
    path = str(resolve_env(repository, env)).strip()
    return bool(
        (path.startswith("/") and Path(path).resolve() == clone)
        or (origin and text == origin)
        or (full_name and (text.endswith(f"/{full_name}") or text.endswith(f":{full_name}")))
    )


def _work_pool(pool: Any, config: Config) -> Any:
    if not (config.preview.work_pool_name or config.work_queue_name or config.job_variables):
        return pool
    result = dict(pool) if isinstance(pool, dict) else {}
    if config.preview.work_pool_name:
        result["name"] = config.preview.work_pool_name
    if config.work_queue_name:
        result["work_queue_name"] = config.work_queue_name
    if config.job_variables:
        job = result.get("job_variables")
        result["job_variables"] = {**(job if isinstance(job, dict) else {}), **config.job_variables}
    return result
