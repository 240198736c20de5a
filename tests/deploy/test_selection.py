"""Which deployments a deploy takes: DEPLOYMENT or DEPLOYMENTS as a name, a bare name or a glob."""

from __future__ import annotations

import pytest

from pipe.config import SCHEMA
from pipe.deploy.project import DeploymentSpec
from pipe.deploy.selection import matches
from pipe.errors import DeployError
from tests.deploy.repo import Repo, deploy_env, deploy_with


def spec(name: str, flow_names: tuple[str, ...]) -> DeploymentSpec:
    return DeploymentSpec(index=0, name=name, entrypoint="f.py:x", flow_names=flow_names, work_pool="p")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("etl/prod", True),
        ("etl_flow/prod", True),  # the function's name, as Prefect's CLI matches it
        ("etl-flow/prod", True),  # the function's name as Prefect derives a flow name from it
        ("prod", True),
        ("pro*", True),
        ("*/prod", True),
        ("e*/p*", True),
        ("etl/*", True),
        ("etl/staging", False),
        ("other/prod", False),
        ("prod*x", False),
        ("ETL/prod", False),
    ],
)
def test_selection(pattern: str, expected: bool) -> None:
    assert matches(spec("prod", ("etl", "etl-flow", "etl_flow")), pattern) is expected


@pytest.mark.prefect
@pytest.mark.skipif("DEPLOYMENTS" not in SCHEMA, reason="config has no DEPLOYMENTS variable")
def test_deployments_list_selects_each_entry(pipe_env: dict[str, str], repo: Repo) -> None:
    """DEPLOYMENTS (several runs) selects for the deploy actions too, in its order, never everything."""
    sha = repo.standard()
    entries = {
        "DEPLOYMENTS_COUNT": "2",
        "DEPLOYMENTS_0": f"pinned-code/{repo.b}",
        "DEPLOYMENTS_1": f"other-flow/{repo.a}",
    }
    names = deploy_with(deploy_env(pipe_env, repo, sha, DRY_RUN="true", **entries))
    assert names == [f"pinned-code/{repo.b}", f"other-flow/{repo.a}"]
    with pytest.raises(DeployError, match=r"DEPLOYMENTS item 1 'other-flow/nope' matches none"):
        deploy_with(deploy_env(pipe_env, repo, sha, DRY_RUN="true", **{**entries, "DEPLOYMENTS_1": "other-flow/nope"}))
