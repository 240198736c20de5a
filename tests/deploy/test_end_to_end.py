"""ACTION=deploy / deploy-and-run end to end, as a Bitbucket step runs the pipe: in the clone, against
the real Prefect server and process worker of the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.repo import Repo, assert_clean_failure, deploy_env, read_deployment
from tests.support.leaks import assert_no_secrets
from tests.support.pipe import ROOT, PipeResult, run_pipe
from tests.support.prefect_server import PrefectServer

pytestmark = pytest.mark.prefect


def pipe_in_clone(env: dict[str, str], repo: Repo) -> PipeResult:
    """`python -m pipe` as the image runs it: in the clone, the pipe on PYTHONPATH, the clone never
    importable as the pipe (PYTHONSAFEPATH)."""
    return run_pipe({**env, "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1"}, cwd=repo.path)


def written(path: Path) -> dict[str, str]:
    """The output variables file, as Bitbucket reads it."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_pipe_deploy_and_run(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, tmp_path: Path
) -> None:
    sha = repo.standard("deployed-and-run")
    name = f"pinned-code/{repo.a}"
    variables = tmp_path / "output-variables"
    env = deploy_env(pipe_env, repo, sha, DEPLOYMENT=name, BITBUCKET_PIPELINES_VARIABLES_PATH=str(variables))
    result = pipe_in_clone({**env, "ACTION": "deploy-and-run"}, repo)
    assert result.code == 0, result
    assert f"prefect deploy │ Deployment '{name}' successfully created" in result.output
    assert "code marker: deployed-and-run" in result.output
    assert "✔" in result.output
    deployed = read_deployment(prefect_server, name)
    assert deployed.version == sha[:8]
    outputs = written(variables)
    assert (outputs["PREFECT_DEPLOYMENT_ID"], outputs["PREFECT_DEPLOYMENT_NAME"]) == (str(deployed.id), name)
    assert outputs["PREFECT_DEPLOYMENT_VERSION"] == sha[:8]
    assert outputs["PREFECT_FLOW_RUN_STATE"] == "COMPLETED"  # the runs' outputs leave the deployments' alone
    assert_no_secrets(result.output, prefect_server.auth_string)


def test_pipe_deploy_broken_file_is_one_line(pipe_env: dict[str, str], repo: Repo) -> None:
    repo.write("prefect.yaml", "deployments: [\n")
    sha = repo.commit("broken")
    result = pipe_in_clone(deploy_env(pipe_env, repo, sha), repo)
    assert_clean_failure(result, "prefect.yaml is not valid YAML")


def test_pipe_deploy_bare_glob(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, tmp_path: Path
) -> None:
    """config must accept a bare deployment-name glob for ACTION=deploy."""
    sha = repo.standard()
    variables = tmp_path / "output-variables"
    env = deploy_env(
        pipe_env, repo, sha, DEPLOYMENT=repo.b[:-2] + "*", BITBUCKET_PIPELINES_VARIABLES_PATH=str(variables)
    )
    result = pipe_in_clone(env, repo)
    assert result.code == 0, result
    assert "✔" in result.output
    deployed = read_deployment(prefect_server, f"pinned-code/{repo.b}")
    assert deployed is not None
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None
    outputs = written(variables)
    assert outputs["PREFECT_DEPLOYMENT_ID"] == str(deployed.id) and outputs["PREFECT_DEPLOYMENT_COUNT"] == "1"
    assert "PREFECT_FLOW_RUN_COUNT" not in outputs
    assert_no_secrets(result.output, prefect_server.auth_string)
