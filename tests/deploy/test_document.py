"""What a deploy puts on the server: the selected deployments of the commit, tagged and versioned by
it, their pull steps pinned to it — against the real Prefect server and process worker of the tests."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.deploy.repo import Repo, deploy_env, deploy_with, read_deployment
from tests.support.leaks import assert_no_secrets
from tests.support.pipe import run_pipe
from tests.support.prefect_server import PrefectServer

pytestmark = pytest.mark.prefect


def test_glob_deploys_only_the_matching_ones_at_the_commit(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    sha = repo.standard()
    before = (repo.path / "prefect.yaml").read_bytes()
    started = time.monotonic()
    # 'pinned-code' is the flow's registered name; Prefect's own --name matching knows only 'run_pinned'.
    names = deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT="pinned-code/*"))
    elapsed = time.monotonic() - started

    assert names == [f"pinned-code/{repo.a}", f"pinned-code/{repo.b}"]
    for name in names:
        deployment = read_deployment(prefect_server, name)
        assert deployment is not None, name
        assert deployment.version == sha[:8]  # what Prefect derives from BITBUCKET_COMMIT itself
        assert {"deploy-commit:" + sha[:7], "deploy-build:42"} <= set(deployment.tags)
        assert deployment.work_pool_name == "pipe-tests"
        clone = deployment.pull_steps[0]["prefect.deployments.steps.git_clone"]
        assert clone == {"repository": str(repo.path), "commit_sha": sha}  # resolved at deploy time
    first = read_deployment(prefect_server, names[0])
    assert "mine" in first.tags  # the file's own tags are kept
    assert read_deployment(prefect_server, f"other-flow/{repo.a}") is None  # not selected: not deployed

    assert (repo.path / "prefect.yaml").read_bytes() == before  # the user's file is never rewritten
    assert repo.git("status", "--porcelain") == ""  # nothing left in the clone
    out = capfd.readouterr().out
    assert f"prefect deploy │ Deployment 'pinned-code/{repo.a}' successfully created" in out
    assert "╭" not in out and "\x1b[" not in out.replace("\x1b[0m", "").split("prefect deploy │")[-1]
    assert_no_secrets(out, prefect_server.auth_string)
    assert elapsed < 60


def test_bare_name_selects_and_version_names_the_commit_without_git(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, tmp_path: Path
) -> None:
    """The pipe's image has no git, so Prefect cannot derive its vcs:bitbucket version (it reads the
    commit message with `git log`) and would fall back to a hash of the flow file: the pipe sets the
    version Prefect would have derived."""
    sha = repo.standard()
    no_git = tmp_path / "empty-bin"
    no_git.mkdir()
    env = deploy_env(pipe_env, repo, sha, PATH=str(no_git))
    # A bare deployment name matches it under every flow.
    names = deploy_with(env, deployment=repo.a)
    assert names == [f"pinned-code/{repo.a}", f"other-flow/{repo.a}"]
    for name in names:
        assert read_deployment(prefect_server, name).version == sha[:8]


def test_dry_run_checks_everything_and_deploys_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    sha = repo.standard()
    names = deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT="pinned-code/*", DRY_RUN="true"))
    assert names == [f"pinned-code/{repo.a}", f"pinned-code/{repo.b}"]
    out = capfd.readouterr().out
    # The file the CLI would read (YAML quotes a version of digits only, as a commit's 8 characters can be).
    assert f"deploy-commit:{sha[:7]}" in out and re.search(rf"version: '?{sha[:8]}'?\n", out), out
    assert "prefect deploy │" not in out  # the CLI never ran
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None


def test_run_executes_the_deployed_commits_code(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    """Deploy commit 1, move the branch on to commit 2: a run still executes commit 1's code. Deploy
    commit 2: now it executes commit 2's."""
    name = f"pinned-code/{repo.a}"
    first = repo.standard("first-commit-code")
    assert deploy_with(deploy_env(pipe_env, repo, first, DEPLOYMENT=name)) == [name]
    second = repo.standard("second-commit-code")  # HEAD moves on; the deployment stays on `first`

    run_env = {**pipe_env, "DEPLOYMENT": name, "BITBUCKET_COMMIT": first}
    result = run_pipe(run_env)
    assert result.code == 0, result
    assert "code marker: first-commit-code" in result.output
    assert "second-commit-code" not in result.output

    assert deploy_with(deploy_env(pipe_env, repo, second, DEPLOYMENT=name)) == [name]
    assert read_deployment(prefect_server, name).version == second[:8]
    result = run_pipe({**run_env, "BITBUCKET_COMMIT": second, "BITBUCKET_STEP_RUN_NUMBER": "2"})
    assert result.code == 0, result
    assert "code marker: second-commit-code" in result.output
    assert "first-commit-code" not in result.output


@pytest.mark.parametrize("name", ["PREFECT_API_AUTH_STRING", "BITBUCKET_STEP_OIDC_TOKEN"])
def test_a_prefect_yaml_that_would_store_the_pipes_credential_deploys_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, name: str
) -> None:
    leaking = repo_yaml_with(repo, f'description: "{{{{ ${name} }}}}"')
    sha = repo.standard(prefect_yaml=leaking)
    result = run_pipe(deploy_env(pipe_env, repo, sha, BITBUCKET_STEP_OIDC_TOKEN="eyJhbGciOi.eyJzdWIiOiJ4In0.sig"))

    assert result.code == 1, result
    assert f"uses {{{{ ${name} }}}}, which would write the pipe's credential" in result.output
    assert "prefect deploy │" not in result.output  # refused before the CLI ran
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None
    assert_no_secrets(result.output, prefect_server.auth_string)


def repo_yaml_with(repo: Repo, line: str) -> str:
    """The standard prefect.yaml with ``line`` added to the first deployment."""
    from tests.deploy.repo import PREFECT_YAML

    text = PREFECT_YAML.format(a=repo.a, b=repo.b)
    return text.replace(f"  - name: {repo.a}\n", f"  - name: {repo.a}\n    {line}\n", 1)
