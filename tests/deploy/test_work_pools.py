"""The work pools of the selection, asked of the API before anything is deployed."""

from __future__ import annotations

import uuid

import pytest

from pipe.errors import DeployError, PrefectError
from tests.deploy.repo import PREFECT_YAML, Repo, deploy_env, deploy_with, read_deployment
from tests.support.prefect_server import PrefectServer


@pytest.mark.prefect
def test_missing_work_pool_deploys_none_of_the_selection(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    """Prefect deploys one deployment after the other and stops at a missing pool, leaving the ones
    before it deployed; the pipe asks the API first, so nothing is."""
    pool = f"no-such-pool-{uuid.uuid4().hex[:6]}"
    sha = repo.standard(
        prefect_yaml=PREFECT_YAML.format(a=repo.a, b=repo.b).replace(
            "name: pipe-tests\n  - name: " + repo.a, f"name: {pool}\n  - name: {repo.a}"
        )
    )
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha))
    line = caught.value.line()
    assert f"work pool '{pool}'" in line and "does not exist" in line and "nothing was deployed" in line, line
    assert f"prefect work-pool create {pool}" in line
    for name in (f"pinned-code/{repo.a}", f"pinned-code/{repo.b}", f"other-flow/{repo.a}"):
        assert read_deployment(prefect_server, name) is None


@pytest.mark.prefect
def test_rejected_credential_is_one_line_and_deploys_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    """The work pool check is the deploy's first request: a credential the API rejects stops it there,
    in the words of every other request of the pipe, before the CLI starts."""
    sha = repo.standard()
    env = deploy_env(pipe_env, repo, sha, PREFECT_API_AUTH_STRING="pipe:not-the-password")
    with pytest.raises(PrefectError) as caught:
        deploy_with(env)
    line = caught.value.line()
    assert "rejected the credential from PREFECT_API_AUTH_STRING (401 Unauthorized)" in line, line
    assert "while reading work pool 'pipe-tests'" in line, line
    assert "prefect deploy │" not in capfd.readouterr().out
    for name in (f"pinned-code/{repo.a}", f"pinned-code/{repo.b}", f"other-flow/{repo.a}"):
        assert read_deployment(prefect_server, name) is None
