"""ACTION=deploy / deploy-and-run end to end, as a Bitbucket step runs the pipe: in the clone, against
the real Prefect server and process worker of the tests."""

from __future__ import annotations

import pytest

from tests.deploy.repo import Repo, assert_clean_failure, deploy_env, read_deployment
from tests.support.leaks import assert_no_secrets
from tests.support.pipe import ROOT, PipeResult, run_pipe
from tests.support.prefect_server import PrefectServer

pytestmark = pytest.mark.prefect


def pipe_wired() -> bool:
    """ACTION=deploy reaches pipe.deploy once run.py calls it."""
    return "pipe.deploy" in (ROOT / "pipe" / "run.py").read_text()


needs_wiring = pytest.mark.skipif(not pipe_wired(), reason="ACTION=deploy is not wired into pipe/run.py yet")


def pipe_in_clone(env: dict[str, str], repo: Repo) -> PipeResult:
    """`python -m pipe` as the image runs it: in the clone, the pipe on PYTHONPATH, the clone never
    importable as the pipe (PYTHONSAFEPATH)."""
    return run_pipe({**env, "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1"}, cwd=repo.path)


@needs_wiring
def test_pipe_deploy_and_run(pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo) -> None:
    sha = repo.standard("deployed-and-run")
    name = f"pinned-code/{repo.a}"
    result = pipe_in_clone({**deploy_env(pipe_env, repo, sha, DEPLOYMENT=name), "ACTION": "deploy-and-run"}, repo)
    assert result.code == 0, result
    assert f"prefect deploy │ Deployment '{name}' successfully created" in result.output
    assert "code marker: deployed-and-run" in result.output
    assert "✔" in result.output
    assert read_deployment(prefect_server, name).version == sha[:8]
    assert_no_secrets(result.output, prefect_server.auth_string)


@needs_wiring
def test_pipe_deploy_broken_file_is_one_line(pipe_env: dict[str, str], repo: Repo) -> None:
    repo.write("prefect.yaml", "deployments: [\n")
    sha = repo.commit("broken")
    result = pipe_in_clone(deploy_env(pipe_env, repo, sha), repo)
    assert_clean_failure(result, "prefect.yaml is not valid YAML")


@needs_wiring
def test_pipe_deploy_bare_glob(pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo) -> None:
    """config must accept a bare deployment-name glob for ACTION=deploy."""
    sha = repo.standard()
    result = pipe_in_clone(deploy_env(pipe_env, repo, sha, DEPLOYMENT=repo.b[:-2] + "*"), repo)
    assert result.code == 0, result
    assert "✔" in result.output
    assert read_deployment(prefect_server, f"pinned-code/{repo.b}") is not None
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None
    assert_no_secrets(result.output, prefect_server.auth_string)
