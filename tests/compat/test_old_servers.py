"""The real pipe (``python -m pipe`` from the project venv) against the oldest supported Prefect server
and one in the middle, each with its own worker and deployments made by its own Prefect; and the
one-line refusal of a server that is too old, DRY_RUN included, with nothing created."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipe.prefect_compat import LABELS_SINCE, LOWEST_SUPPORTED, parse_version
from tests.compat.servers import LOWEST, MIDDLE, TOO_OLD, api, count_flow_runs, old_server
from tests.deploy.repo import Repo
from tests.preview.labelling import assert_labelling_changes_nothing_else
from tests.support.pipe import BITBUCKET_ENV, ROOT, PipeResult, run_pipe, step_uuid
from tests.support.prefect_server import PrefectServer

pytestmark = pytest.mark.compat

RUN_ID = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")
# Still running well after creation: the step that ended a 3.2.15 wait with a refused log read.
SLEEPY = json.dumps({"seconds": 8, "lines": 8})
CASES = {
    "completed": {"DEPLOYMENT": "sleepy/ci", "PARAMETERS": SLEEPY},
    "failed": {"DEPLOYMENT": "fail/ci"},
    "dry_run": {"DEPLOYMENT": "greet/ci", "DRY_RUN": "true"},
}


def step_env(server: PrefectServer, home: Path, **variables: str) -> dict[str, str]:
    """A typical step's variables (as tests/conftest.py's pipe_env) for this server, its own tag."""
    home.mkdir(parents=True)
    return {
        **BITBUCKET_ENV,
        "BITBUCKET_CLONE_DIR": str(home),
        "BITBUCKET_PIPE_STORAGE_DIR": str(home / "storage"),
        "BITBUCKET_STEP_UUID": step_uuid(),
        "PREFECT_API_URL": server.api_url,
        "PREFECT_API_AUTH_STRING": server.auth_string,
        "REPORT": "false",
        "PREFECT_HOME": str(home / "prefect-home"),
        "TIMEOUT": "180",
        "TAGS_COUNT": "1",
        "TAGS_0": f"compat-{os.urandom(4).hex()}",
        **variables,
    }


def runs_tagged(server: PrefectServer, tag: str) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = api(server, "POST", "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [tag]}}})
    return runs


def fail_lines(result: PipeResult) -> list[str]:
    return [line for line in result.output.splitlines() if "✖" in line]


@pytest.fixture(scope="module", params=[LOWEST, MIDDLE])
def server(request: pytest.FixtureRequest) -> Iterator[PrefectServer]:
    started = old_server(request.param)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def steps(
    server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[dict[str, str], PipeResult]]:
    """Each case as its own step, side by side (they share nothing but the server)."""
    root = tmp_path_factory.mktemp("compat")
    envs = {name: step_env(server, root / name, **variables) for name, variables in CASES.items()}
    with ThreadPoolExecutor(len(envs)) as pool:
        results = dict(zip(envs, pool.map(run_pipe, envs.values()), strict=True))
    return {name: (envs[name], results[name]) for name in envs}


def server_version(server: PrefectServer) -> str:
    return Path(server.python).parent.parent.name  # the venv is named after the version


def test_the_server_version_is_named(
    server: PrefectServer, steps: dict[str, tuple[dict[str, str], PipeResult]]
) -> None:
    for _, result in steps.values():
        assert f"Prefect server {server_version(server)} at 127.0.0.1:{server.port}" in result.output, result


def test_a_completed_run_passes_with_its_logs(
    server: PrefectServer, steps: dict[str, tuple[dict[str, str], PipeResult]]
) -> None:
    env, result = steps["completed"]
    assert result.code == 0, result
    assert "✔" in result.output and not fail_lines(result), result
    assert "prefect │" in result.output and "tick 7" in result.output and "last line of sleepy" in result.output
    [run] = runs_tagged(server, env["TAGS_0"])
    assert f"/runs/flow-run/{run['id']}" in result.output
    assert "commit:0f3c1e2" in run["tags"]  # type: ignore[operator]
    version = parse_version(server_version(server))
    assert version is not None
    if version.at_least(LABELS_SINCE):
        assert run["labels"]["bitbucket.commit"] == BITBUCKET_ENV["BITBUCKET_COMMIT"]  # type: ignore[index]


def test_a_failed_run_fails_the_step_naming_the_task(steps: dict[str, tuple[dict[str, str], PipeResult]]) -> None:
    _, result = steps["failed"]
    assert result.code == 1, result
    [line] = fail_lines(result)
    assert "ended Failed" in line and "boom" in line, result
    assert re.search(r"Failed task\s+explode-\w+", result.output), result
    assert "about to fail" in result.output  # the flow's own lines


def test_dry_run_passes_and_creates_nothing(
    server: PrefectServer, steps: dict[str, tuple[dict[str, str], PipeResult]]
) -> None:
    env, result = steps["dry_run"]
    assert result.code == 0, result
    assert "Dry run passed" in result.output, result
    assert runs_tagged(server, env["TAGS_0"]) == []


# -- too old -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def too_old_server() -> Iterator[PrefectServer]:
    started = old_server(TOO_OLD, api_only=True)  # refused before any deployment is read
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.parametrize("dry_run", ["false", "true"])
def test_a_too_old_server_is_refused_in_one_line(dry_run: str, too_old_server: PrefectServer, tmp_path: Path) -> None:
    result = run_pipe(step_env(too_old_server, tmp_path / "step", DEPLOYMENT="greet/ci", DRY_RUN=dry_run))
    assert result.code == 1, result
    [line] = fail_lines(result)
    assert f"Prefect {TOO_OLD}" in line and f"Prefect {LOWEST_SUPPORTED} or newer" in line, result
    assert "Traceback" not in result.output and "passed" not in result.output, result
    assert count_flow_runs(too_old_server) == 0


# -- previews ----------------------------------------------------------------------------------------


def test_previews_need_deployment_labels(server: PrefectServer, tmp_path: Path) -> None:
    """A server with deployment labels gets a labelled preview (the label call keeps the deployment as
    deployed); one without them is refused in one line before anything is deployed."""
    repo = Repo(tmp_path / "repo")
    sha = repo.standard("compat-preview")
    env = step_env(
        server,
        tmp_path / "step",
        ACTION="preview",
        BITBUCKET_PR_ID="5",
        BITBUCKET_BRANCH="feature/x",
        BITBUCKET_CLONE_DIR=str(repo.path),
        BITBUCKET_COMMIT=sha,
        DEPLOYMENT=f"pinned-code/{repo.a}",
    )
    env.update(PYTHONPATH=str(ROOT), PYTHONSAFEPATH="1")  # the pipe, in the clone
    result = run_pipe(env, cwd=repo.path)
    name = f"{repo.a}-pr-5"
    found = api(server, "POST", "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    version = parse_version(server_version(server))
    assert version is not None
    if not version.at_least(LABELS_SINCE):
        assert result.code == 1, result
        [line] = fail_lines(result)
        assert "keeps no labels on deployments" in line and "nothing was deployed" in line, result
        assert found == []
        return
    assert result.code == 0, result
    [deployment] = found
    assert deployment["labels"]["bitbucket.repository"] == BITBUCKET_ENV["BITBUCKET_REPO_FULL_NAME"]
    assert deployment["labels"]["bitbucket.pull_request"] == "5"
    assert deployment["version"] == sha[:8] and "preview" in deployment["tags"]
    assert deployment["pull_steps"][0]["prefect.deployments.steps.git_clone"]["commit_sha"] == sha
    env.pop("DEPLOYMENT")  # the clean-up looks at every preview of the repository
    dry = run_pipe({**env, "ACTION": "cleanup-previews", "PREVIEW_TTL_DAYS": "1", "DRY_RUN": "true"}, cwd=repo.path)
    assert dry.code == 0, dry
    assert f"pinned-code/{name}" in dry.output and "keep" in dry.output, dry


def test_labelling_a_deployment_changes_nothing_else(server: PrefectServer) -> None:
    version = parse_version(server_version(server))
    assert version is not None
    if not version.at_least(LABELS_SINCE):
        pytest.skip(f"Prefect {version} keeps no labels on deployments (previews are refused there)")
    assert_labelling_changes_nothing_else(server)
