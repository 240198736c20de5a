"""The preview entries of the prefect.yaml copy: renamed, pinned to the commit, never running by themselves."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pipe import config as pipe_config
from pipe.config import Config
from pipe.deploy.project import DeploymentSpec
from pipe.errors import DeployError
from pipe.preview.document import pinned, preview_document, renamed

COMMIT = "0f3c1e2d4b5a69788796a5b4c3d2e1f00f1e2d3c"
CLONE = "prefect.deployments.steps.git_clone"
WORKDIR = "prefect.deployments.steps.set_working_directory"
ENV: dict[str, str] = {}  # the CLI's environment, for a pull step's {{ $NAME }}


def load(tmp_path: Path, **extra: str) -> Config:
    return pipe_config.load(
        {
            "PREFECT_API_URL": "https://prefect.example.com/api",
            "ACTION": "preview",
            "REPORT": "false",
            "BITBUCKET_PR_ID": "7",
            "BITBUCKET_COMMIT": COMMIT,
            "BITBUCKET_BRANCH": "feature/x",
            "BITBUCKET_REPO_FULL_NAME": "acme/repo",
            "BITBUCKET_WORKSPACE": "acme",
            "BITBUCKET_REPO_SLUG": "repo",
            "BITBUCKET_BUILD_NUMBER": "3",
            "BITBUCKET_CLONE_DIR": str(tmp_path),
            **extra,
        }
    )


def spec(index: int, name: str, flow: str = "etl", pool: str | None = "prod") -> DeploymentSpec:
    return DeploymentSpec(
        index=index, name=name, entrypoint=f"flows/{flow}.py:{flow}", flow_names=(flow,), work_pool=pool
    )


def clone_step(branch: str = "main") -> dict[str, Any]:
    return {CLONE: {"id": "clone", "repository": "https://bitbucket.org/acme/repo.git", "branch": branch}}


def entry(name: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "entrypoint": "flows/etl.py:etl",
        "version": "1.0",
        "schedule": {"cron": "0 * * * *"},
        "schedules": [{"cron": "0 0 * * *"}],
        "triggers": [{"enabled": True, "match": {"prefect.resource.id": "x"}}],
        "concurrency_limit": 5,
        "tags": ["etl", "nightly"],
        "work_pool": {"name": "prod", "work_queue_name": "default", "job_variables": {"image": "etl:1", "cpu": 1}},
        **more,
    }


def test_renamed_by_the_default_template(tmp_path: Path) -> None:
    config = load(tmp_path)
    previews = renamed([spec(0, "daily"), spec(1, "hourly", pool=None)], config)
    assert [p.name for p in previews] == ["daily-pr-7", "hourly-pr-7"]
    assert [p.label for p in previews] == ["etl/daily-pr-7", "etl/hourly-pr-7"]
    assert [p.work_pool for p in previews] == ["prod", None]
    assert [p.index for p in previews] == [0, 1]


def test_renamed_by_a_template_with_the_branch(tmp_path: Path) -> None:
    config = load(tmp_path, PREVIEW_NAME="{branch}-{deployment}-{pr}")
    assert [p.name for p in renamed([spec(0, "daily")], config)] == ["feature-x-daily-7"]


def test_work_pool_name_overrides_every_pool(tmp_path: Path) -> None:
    config = load(tmp_path, WORK_POOL_NAME="staging")
    previews = renamed([spec(0, "daily"), spec(1, "hourly", pool=None)], config)
    assert [p.work_pool for p in previews] == ["staging", "staging"]


def test_a_template_without_deployment_cannot_name_two_of_one_flow(tmp_path: Path) -> None:
    config = load(tmp_path, PREVIEW_NAME="pr-{pr}")
    with pytest.raises(DeployError) as caught:
        renamed([spec(0, "daily"), spec(1, "hourly")], config)
    assert "PREVIEW_NAME" in str(caught.value) and "{deployment}" in str(caught.value)


def test_a_template_without_deployment_names_one_of_each_flow(tmp_path: Path) -> None:
    config = load(tmp_path, PREVIEW_NAME="pr-{pr}")
    previews = renamed([spec(0, "daily", flow="etl"), spec(1, "daily", flow="report")], config)
    assert [p.label for p in previews] == ["etl/pr-7", "report/pr-7"]


def document(*entries: dict[str, Any], pull: list[Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"name": "repo", "deployments": list(entries)}
    if pull is not None:
        result["pull"] = pull
    return result


def test_preview_entry(tmp_path: Path) -> None:
    config = load(tmp_path)
    original = document(entry("daily"))
    kept = copy.deepcopy(original)
    result = preview_document(original, renamed([spec(0, "daily")], config), config, ENV)
    assert original == kept  # the input is not changed
    got = result["deployments"][0]
    assert got["name"] == "daily-pr-7"
    assert got["version"] == COMMIT[:8]
    assert "schedule" not in got and got["schedules"] == []
    assert got["triggers"] == []
    assert got["concurrency_limit"] == 1
    assert got["tags"][:4] == ["preview", "pr:7", "branch:feature/x", "repo:acme/repo"]
    assert got["tags"][4:] == ["etl", "nightly"]
    assert got["work_pool"] == entry("daily")["work_pool"]  # no overrides: untouched
    assert got["entrypoint"] == "flows/etl.py:etl"
    assert result["name"] == "repo"


def test_tags_are_not_repeated(tmp_path: Path) -> None:
    config = load(tmp_path)
    result = preview_document(
        document(entry("daily", tags=["etl", "preview", "pr:7"])), renamed([spec(0, "daily")], config), config, ENV
    )
    assert result["deployments"][0]["tags"] == ["preview", "pr:7", "branch:feature/x", "repo:acme/repo", "etl"]


def test_entry_without_tags(tmp_path: Path) -> None:
    config = load(tmp_path)
    bare = {"name": "daily", "entrypoint": "flows/etl.py:etl"}
    result = preview_document(document(bare), renamed([spec(0, "daily")], config), config, ENV)
    got = result["deployments"][0]
    assert got["tags"] == ["preview", "pr:7", "branch:feature/x", "repo:acme/repo"]
    assert got["schedules"] == [] and got["triggers"] == [] and got["concurrency_limit"] == 1


def test_several_entries_in_order(tmp_path: Path) -> None:
    config = load(tmp_path)
    previews = renamed([spec(0, "daily"), spec(1, "hourly")], config)
    result = preview_document(document(entry("daily"), entry("hourly")), previews, config, ENV)
    assert [e["name"] for e in result["deployments"]] == ["daily-pr-7", "hourly-pr-7"]


def test_entry_pull_steps_are_pinned_to_the_commit(tmp_path: Path) -> None:
    config = load(tmp_path)
    workdir = {WORKDIR: {"directory": "/opt/flows"}}
    original = document(
        entry("daily", pull=[clone_step(), workdir, {"prefect.deployments.steps.run_shell_script": {"script": "x"}}]),
        pull=[clone_step("release")],
    )
    kept = copy.deepcopy(original)
    result = preview_document(original, renamed([spec(0, "daily")], config), config, ENV)
    pull = result["deployments"][0]["pull"]
    assert pull[0][CLONE]["commit_sha"] == COMMIT
    assert "branch" not in pull[0][CLONE]
    assert pull[0][CLONE]["repository"] == "https://bitbucket.org/acme/repo.git"
    assert pull[1:] == kept["deployments"][0]["pull"][1:]  # other steps untouched
    assert original == kept


def test_file_level_pull_steps_are_pinned_into_the_entry(tmp_path: Path) -> None:
    config = load(tmp_path)
    original = document(entry("daily"), pull=[clone_step(), {WORKDIR: {"directory": "/opt"}}])
    kept = copy.deepcopy(original)
    result = preview_document(original, renamed([spec(0, "daily")], config), config, ENV)
    pull = result["deployments"][0]["pull"]
    assert pull[0][CLONE]["commit_sha"] == COMMIT and "branch" not in pull[0][CLONE]
    assert pull[1] == {WORKDIR: {"directory": "/opt"}}
    assert original == kept


def test_no_pull_steps_stay_none(tmp_path: Path) -> None:
    config = load(tmp_path)
    result = preview_document(document(entry("daily")), renamed([spec(0, "daily")], config), config, ENV)
    assert "pull" not in result["deployments"][0]


def test_pinned_handles_odd_steps() -> None:
    steps: list[Any] = [
        "not a step",
        {"my_collection.git_clone": {"branch": "dev"}},
        {CLONE: None},
        {WORKDIR: {"directory": "/x"}},
    ]
    kept = copy.deepcopy(steps)
    result = pinned(steps, COMMIT, lambda repository: True)
    assert result[0] == "not a step"
    assert result[1] == {"my_collection.git_clone": {"commit_sha": COMMIT}}
    assert result[2] == {CLONE: None}
    assert result[3] == {WORKDIR: {"directory": "/x"}}
    assert steps == kept


def test_work_pool_overrides(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        WORK_POOL_NAME="staging",
        WORK_QUEUE_NAME="previews",
        JOB_VARIABLES='{"cpu": 2, "env": {"STAGE": "preview"}}',
    )
    original = document(entry("daily"))
    kept = copy.deepcopy(original)
    result = preview_document(original, renamed([spec(0, "daily")], config), config, ENV)
    assert result["deployments"][0]["work_pool"] == {
        "name": "staging",
        "work_queue_name": "previews",
        "job_variables": {"image": "etl:1", "cpu": 2, "env": {"STAGE": "preview"}},
    }
    assert original == kept


def test_each_override_alone(tmp_path: Path) -> None:
    base = load(tmp_path)
    specs = [spec(0, "daily")]
    pool = entry("daily")["work_pool"]

    queue = dataclasses.replace(base, work_queue_name="previews")
    got = preview_document(document(entry("daily")), specs, queue, ENV)["deployments"][0]["work_pool"]
    assert got == {**pool, "work_queue_name": "previews"}

    named = dataclasses.replace(base, preview=dataclasses.replace(base.preview, work_pool_name="staging"))
    got = preview_document(document(entry("daily")), specs, named, ENV)["deployments"][0]["work_pool"]
    assert got == {**pool, "name": "staging"}

    jobs = dataclasses.replace(base, job_variables={"memory": "1Gi"})
    got = preview_document(document(entry("daily")), specs, jobs, ENV)["deployments"][0]["work_pool"]
    assert got["job_variables"] == {"image": "etl:1", "cpu": 1, "memory": "1Gi"}


def test_overrides_on_an_entry_without_a_pool(tmp_path: Path) -> None:
    config = load(tmp_path, WORK_POOL_NAME="staging", JOB_VARIABLES='{"cpu": 2}')
    bare = {"name": "daily", "entrypoint": "flows/etl.py:etl"}
    result = preview_document(document(bare), renamed([spec(0, "daily", pool=None)], config), config, ENV)
    assert result["deployments"][0]["work_pool"] == {"name": "staging", "job_variables": {"cpu": 2}}


def test_entry_without_a_pool_and_no_overrides_gets_no_null_pool(tmp_path: Path) -> None:
    config = load(tmp_path)
    bare = {"name": "daily", "entrypoint": "flows/etl.py:etl"}
    result = preview_document(document(bare), renamed([spec(0, "daily")], config), config, ENV)
    assert result["deployments"][0].get("work_pool", {}) is not None


def test_only_this_repositorys_clones_are_pinned(tmp_path: Path) -> None:
    """A clone of another repository (a shared library) keeps its branch; this one's, however written, is pinned."""
    config = load(tmp_path)
    env = {"BITBUCKET_CLONE_DIR": str(tmp_path), "BITBUCKET_GIT_HTTP_ORIGIN": "http://bitbucket.org/acme/repo"}
    own = [
        "https://bitbucket.org/acme/repo.git",
        "git@bitbucket.org:acme/repo.git",
        "https://x-token-auth:{{ $TOKEN }}@bitbucket.org/acme/Repo",
        "{{ $BITBUCKET_CLONE_DIR }}",
        "{{ $BITBUCKET_GIT_HTTP_ORIGIN }}/",
    ]
    others = ["https://bitbucket.org/acme/shared-lib.git", "https://bitbucket.org/acme/repo-tools.git", "{{ $OTHER }}"]
    steps = [{CLONE: {"repository": repository, "branch": "main"}} for repository in own + others]
    result = preview_document(document(entry("daily", pull=steps)), renamed([spec(0, "daily")], config), config, env)
    pulled = [step[CLONE] for step in result["deployments"][0]["pull"]]
    assert [args.get("commit_sha") for args in pulled] == [COMMIT] * len(own) + [None] * len(others)
    assert [args.get("branch") for args in pulled] == [None] * len(own) + ["main"] * len(others)
