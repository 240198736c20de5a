"""Preview deployments through the real gateway: a pull-request build deploys, labels and runs its
previews with rights on the previews' names only, and the clean-up on main deletes them — while the same
rights delete no production deployment."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bitbucket.standin import BitbucketStandIn
from tests.deploy.conftest import repo  # noqa: F401 - the fixture
from tests.deploy.repo import Repo, read_deployment
from tests.gateway.conftest import REPO, GatewayProcess, LoopbackIssuer, gateway_env, start_gateway
from tests.preview.steps import BRANCH, TOKEN, cleanup, preview, repository, set_states, step
from tests.support.pipe import plain
from tests.support.prefect_server import PrefectServer

PREVIEWS = "pinned-code/*-pr-*"


@pytest.fixture()
def preview_gateway(prefect_server: PrefectServer, issuer: LoopbackIssuer, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway whose policy gives this repository's pull requests and main rights on previews only."""
    policy = {
        "issuer": issuer.url,
        "audiences": ["prefect-gateway.test.example"],
        "upstream": prefect_server.api_url,
        "rules": [
            {
                "name": "previews",
                "when": {"repositoryUuid": REPO},
                "allow": {"read": True, "run": [PREVIEWS], "deploy": [PREVIEWS]},
            }
        ],
    }
    process = start_gateway(policy, tmp_path / "gateway")
    try:
        yield process
    finally:
        process.stop()


def printed_rule(output: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The ``when`` and ``allow`` of the policy rule a DRY_RUN printed."""
    when, allow = (re.search(rf"^(?:INFO: )?\s+{key}: (\{{.*\}})$", plain(output), re.M) for key in ("when", "allow"))
    assert when and allow, output
    return json.loads(when[1]), json.loads(allow[1])


@pytest.mark.prefect
def test_previews_are_deployed_run_and_cleaned_up_through_the_gateway(
    pipe_env: dict[str, str],
    prefect_server: PrefectServer,
    preview_gateway: GatewayProcess,
    issuer: LoopbackIssuer,
    repo: Repo,  # noqa: F811 - the fixture
) -> None:
    full_name = repository()
    sha = repo.standard("through-the-gateway")
    name = f"pinned-code/{repo.a}"
    on_branch = gateway_env(pipe_env, preview_gateway, issuer.token(branchName=BRANCH))
    dry = preview(on_branch, repo, sha, full_name, 61, DEPLOYMENT=name, PREVIEW_RUN="true", DRY_RUN="true")
    assert dry.code == 0, dry
    preview_name = f"{name}-pr-61"
    assert printed_rule(dry.output) == (
        {"repositoryUuid": REPO, "branchName": BRANCH},
        {"read": True, "run": [preview_name], "deploy": [preview_name]},
    )
    result = preview(on_branch, repo, sha, full_name, 61, DEPLOYMENT=name, PREVIEW_RUN="true")
    assert result.code == 0, result
    assert "code marker: through-the-gateway" in result.output
    deployed = read_deployment(prefect_server, f"{name}-pr-61")
    assert deployed.labels["bitbucket.repository"] == full_name

    # The same rights cannot deploy (or delete) the production deployment.
    refused = step(on_branch, repo, sha, full_name, ACTION="deploy", DEPLOYMENT=name)
    assert refused.code == 1 and f"the gateway denied this step the right 'deploy: {name}'" in refused.output, refused
    assert "the rules matching them (previews) do not grant it). Add a rule granting it" in refused.output, refused
    assert read_deployment(prefect_server, name) is None

    with BitbucketStandIn(expect_authorization=f"Bearer {TOKEN}") as bitbucket:
        set_states(bitbucket, full_name, {61: "MERGED"})
        on_main = gateway_env(pipe_env, preview_gateway, issuer.token(branchName="main"))
        dry = cleanup(on_main, repo, full_name, bitbucket, DRY_RUN="true")
        assert dry.code == 0, dry
        when, allow = printed_rule(dry.output)
        assert when == {"repositoryUuid": REPO, "branchName": "main"}
        assert allow == {"read": True, "run": ["*/*-pr-*"], "deploy": ["*/*-pr-*"]}
        done = cleanup(on_main, repo, full_name, bitbucket)
    assert done.code == 0, done
    assert read_deployment(prefect_server, f"{name}-pr-61") is None
    deletes = [a for a in preview_gateway.audit_lines() if a["method"] == "DELETE" and "/deployments/" in a["path"]]
    assert [(a["decision"], a["deployment"]) for a in deletes] == [("allow", f"{name}-pr-61")]
