"""ACTION=preview and ACTION=cleanup-previews end to end, as Bitbucket steps run the pipe: in the clone,
against the real Prefect server and process worker of the tests, with the Bitbucket stand-in answering
the pull requests' states.

Each test uses a repository name of its own, so clean-ups never see another test's previews."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.bitbucket.standin import BitbucketStandIn
from tests.deploy.repo import Repo, assert_clean_failure, deploy_env, read_deployment
from tests.preview.labelling import assert_labelling_changes_nothing_else
from tests.preview.steps import BRANCH, TOKEN, cleanup, preview, repository, set_states, step
from tests.support.leaks import assert_no_secrets
from tests.support.pipe import ROOT, BackgroundPipe, PipeResult, step_uuid
from tests.support.prefect_server import PrefectServer, sdk_client

pytestmark = pytest.mark.prefect


@pytest.fixture()
def bitbucket() -> Iterator[BitbucketStandIn]:
    with BitbucketStandIn(expect_authorization=f"Bearer {TOKEN}") as server:
        yield server


def make_older(server: PrefectServer, deployment_id: Any, days: int) -> None:
    """As if the deployment had not been updated for ``days`` (the server's own database)."""
    with sqlite3.connect(server.home / "server" / "prefect.db") as db:
        (updated,) = db.execute("SELECT updated FROM deployment WHERE id = ?", (str(deployment_id),)).fetchone()
        older = datetime.fromisoformat(updated) - timedelta(days=days)
        db.execute("UPDATE deployment SET updated = ? WHERE id = ?", (older.isoformat(sep=" "), str(deployment_id)))


def ok(result: PipeResult) -> str:
    assert result.code == 0, result
    assert "Traceback" not in result.output, result
    return result.output


# -- ACTION=preview ------------------------------------------------------------------------------------------


def test_a_pull_request_gets_previews_that_run_its_code_and_are_updated_in_place(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, bitbucket: BitbucketStandIn
) -> None:
    full_name = repository()
    sha = repo.standard("pr-first")
    name = f"pinned-code/{repo.a}"
    first = ok(preview(pipe_env, repo, sha, full_name, 7, DEPLOYMENT=name, PREVIEW_RUN="true"))
    assert "code marker: pr-first" in first
    created = read_deployment(prefect_server, f"{name}-pr-7")
    assert created is not None
    assert read_deployment(prefect_server, name) is None  # the production deployment is not made
    assert {"preview", "pr:7", f"branch:{BRANCH}"} <= set(created.tags)
    assert created.labels["bitbucket.repository"] == full_name
    assert created.labels["bitbucket.pull_request"] == "7"
    assert created.version == sha[:8]
    assert created.concurrency_limit == 1 or created.global_concurrency_limit.limit == 1
    assert created.schedules == []
    clone = next(step for step in created.pull_steps if "prefect.deployments.steps.git_clone" in step)
    assert clone["prefect.deployments.steps.git_clone"]["commit_sha"] == sha
    assert_no_secrets(first, prefect_server.auth_string)

    repo.write("flows/pinned.py", (repo.path / "flows/pinned.py").read_text().replace("pr-first", "pr-second"))
    second_sha = repo.commit("second commit")
    pipeline = {"BITBUCKET_PIPELINE_UUID": step_uuid(), "BITBUCKET_STEP_UUID": step_uuid()}  # the new commit's
    second = ok(preview(pipe_env, repo, second_sha, full_name, 7, DEPLOYMENT=name, PREVIEW_RUN="true", **pipeline))
    assert "code marker: pr-second" in second, second
    updated = read_deployment(prefect_server, f"{name}-pr-7")
    assert updated.id == created.id  # the same preview, updated in place
    assert updated.version == second_sha[:8]
    assert updated.labels["bitbucket.commit"] == second_sha
    with sdk_client(prefect_server) as client:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

        mine = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["pr:7"])))
    assert [d.name for d in mine if d.labels.get("bitbucket.repository") == full_name] == [f"{repo.a}-pr-7"]

    # The pull request is merged: the clean-up on main deletes its preview.
    set_states(bitbucket, full_name, {7: "MERGED"})
    done = ok(cleanup(pipe_env, repo, full_name, bitbucket))
    assert "pull request #7 is merged" in done
    assert read_deployment(prefect_server, f"{name}-pr-7") is None
    assert all(r.method == "GET" for r in bitbucket.pull_request_reads())
    assert_no_secrets(done, prefect_server.auth_string, TOKEN)


def test_a_preview_without_run_is_deployed_and_reported_with_its_link(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, bitbucket: BitbucketStandIn, tmp_path: Path
) -> None:
    full_name = repository()
    sha = repo.standard()
    variables = tmp_path / "output-variables"
    result = preview(
        pipe_env,
        repo,
        sha,
        full_name,
        12,
        DEPLOYMENT=f"pinned-code/{repo.b}",
        PREVIEW_NAME="{deployment}-{branch}-pr{pr}",
        REPORT="true",
        BITBUCKET_ACCESS_TOKEN=TOKEN,
        BITBUCKET_API_URL=bitbucket.api_url,
        BITBUCKET_PIPELINES_PROXY=bitbucket.proxy_url,
        BITBUCKET_COMMIT=sha,
        BITBUCKET_PIPELINES_VARIABLES_PATH=str(variables),
    )
    output = ok(result)
    name = f"pinned-code/{repo.b}-feature-new-etl-pr12"
    deployed = read_deployment(prefect_server, name)
    assert deployed is not None
    written = dict(line.split("=", 1) for line in variables.read_text().splitlines())
    assert (written["PREFECT_DEPLOYMENT_ID"], written["PREFECT_DEPLOYMENT_NAME"]) == (str(deployed.id), name)
    assert written["PREFECT_DEPLOYMENT_URL"].endswith(f"/deployments/deployment/{deployed.id}")
    assert written["PREFECT_DEPLOYMENT_VERSION"] == sha[:8] and written["PREFECT_DEPLOYMENT_COUNT"] == "1"
    with sdk_client(prefect_server) as client:
        assert client.read_flow_runs(deployment_filter=_by_id(deployed.id)) == []  # PREVIEW_RUN is false
    assert f"/deployments/deployment/{deployed.id}" in output
    assert bitbucket.problems == []
    (status,) = bitbucket.statuses()
    assert status["state"] == "SUCCESSFUL" and status["url"].endswith(f"/deployments/deployment/{deployed.id}")
    assert status["refname"] == BRANCH
    (report,) = bitbucket.reports()
    assert report["link"].endswith(f"/deployments/deployment/{deployed.id}")


def _by_id(deployment_id: Any) -> Any:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))


def test_a_preview_never_overwrites_a_deployment_that_is_not_its_own(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    full_name = repository()
    sha = repo.standard()
    # A production deployment that happens to have the preview's name.
    ok(step(pipe_env, repo, sha, full_name, ACTION="deploy", DEPLOYMENT=f"pinned-code/{repo.b}"))
    with sdk_client(prefect_server) as client:
        flow_id = client.read_flow_by_name("pinned-code").id
        taken = client.create_deployment(flow_id=flow_id, name=f"{repo.a}-pr-3", tags=["prod"], version="prod-1")
    line = assert_clean_failure(
        preview(pipe_env, repo, sha, full_name, 3, DEPLOYMENT=f"pinned-code/{repo.a}"),
        f"pinned-code/{repo.a}-pr-3 already exists and is not a preview",
        "PREVIEW_NAME",
    )
    assert "nothing was deployed" in line
    with sdk_client(prefect_server) as client:
        untouched = client.read_deployment(taken)
    assert untouched.tags == ["prod"] and untouched.version == "prod-1"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"BITBUCKET_PR_ID": ""}, "not a pull-request build"),
        ({"PREVIEW_NAME": "{deployment}-preview"}, "PREVIEW_NAME has no {pr}"),
        ({"PREVIEW_NAME": "{deployment}-{user}-{pr}"}, "PREVIEW_NAME uses {user}"),
    ],
)
def test_preview_refusals_create_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, extra: dict[str, str], expected: str
) -> None:
    full_name = repository()
    sha = repo.standard()
    assert_clean_failure(
        preview(pipe_env, repo, sha, full_name, 4, DEPLOYMENT=f"pinned-code/{repo.a}", **extra), expected
    )
    with sdk_client(prefect_server) as client:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

        found = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(like_=repo.a)))
    assert found == []


# -- ACTION=cleanup-previews -----------------------------------------------------------------------------------


def test_cleanup_deletes_closed_pull_requests_previews_and_nothing_else(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, bitbucket: BitbucketStandIn
) -> None:
    full_name, other = repository(), repository()
    sha = repo.standard()
    target = f"pinned-code/{repo.a}"
    for pr in (21, 22, 23):
        ok(preview(pipe_env, repo, sha, full_name, pr, DEPLOYMENT=target))
    ok(preview(pipe_env, repo, sha, other, 22, DEPLOYMENT=target, PREVIEW_NAME="{deployment}-other-pr-{pr}"))
    ok(step(pipe_env, repo, sha, full_name, ACTION="deploy", DEPLOYMENT=target))  # production
    set_states(bitbucket, full_name, {21: "OPEN", 22: "MERGED", 23: "DECLINED"})
    set_states(bitbucket, other, {22: "MERGED"})
    # A run of PR 22's preview that has not started yet: the clean-up cancels it first.
    with sdk_client(prefect_server) as client:
        from prefect.states import Scheduled

        doomed = read_deployment(prefect_server, f"{target}-pr-22")
        waiting = client.create_flow_run_from_deployment(
            doomed.id, state=Scheduled(scheduled_time=datetime.now().astimezone() + timedelta(hours=1))
        )

    dry = ok(cleanup(pipe_env, repo, full_name, bitbucket, DRY_RUN="true"))
    assert "would delete (DRY_RUN)" in dry and "nothing was deleted" in dry
    assert all(read_deployment(prefect_server, f"{target}-pr-{pr}") is not None for pr in (21, 22, 23))

    output = ok(cleanup(pipe_env, repo, full_name, bitbucket))
    assert read_deployment(prefect_server, f"{target}-pr-22") is None
    assert read_deployment(prefect_server, f"{target}-pr-23") is None
    assert read_deployment(prefect_server, f"{target}-pr-21") is not None  # open
    assert read_deployment(prefect_server, target) is not None  # production
    assert read_deployment(prefect_server, f"{target}-other-pr-22") is not None  # another repository's
    assert "pull request #22 is merged" in output and "pull request #23 is declined" in output
    assert "pull request #21 is open" in output
    assert f"Cancelling flow run {waiting.name}" in output
    with sdk_client(prefect_server) as client:
        assert client.read_flow_run(waiting.id).state.type.value == "CANCELLED"
    assert bitbucket.problems == []
    asked = {r.match.get("id") or r.path.rsplit("/", 1)[-1] for r in bitbucket.pull_request_reads()}
    assert asked == {"21", "22", "23"}  # only this repository's pull requests were asked about


def test_cleanup_with_a_ttl_needs_no_token(pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo) -> None:
    full_name = repository()
    sha = repo.standard()
    target = f"pinned-code/{repo.a}"
    for pr in (31, 32):
        ok(preview(pipe_env, repo, sha, full_name, pr, DEPLOYMENT=target))
    make_older(prefect_server, read_deployment(prefect_server, f"{target}-pr-31").id, days=20)
    output = ok(cleanup(pipe_env, repo, full_name, None, PREVIEW_TTL_DAYS="14"))
    assert "not updated for 20 days (PREVIEW_TTL_DAYS=14)" in output
    assert read_deployment(prefect_server, f"{target}-pr-31") is None
    assert read_deployment(prefect_server, f"{target}-pr-32") is not None


def test_cleanup_refusals_delete_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, bitbucket: BitbucketStandIn
) -> None:
    full_name = repository()
    sha = repo.standard()
    target = f"pinned-code/{repo.a}-pr-41"
    ok(preview(pipe_env, repo, sha, full_name, 41, DEPLOYMENT=f"pinned-code/{repo.a}"))
    set_states(bitbucket, full_name, {41: "MERGED"})

    assert_clean_failure(cleanup(pipe_env, repo, full_name, None), "BITBUCKET_ACCESS_TOKEN", "PREVIEW_TTL_DAYS")
    bitbucket.forbidden = True
    assert_clean_failure(cleanup(pipe_env, repo, full_name, bitbucket), "BITBUCKET_ACCESS_TOKEN", "403")
    bitbucket.forbidden = False
    bitbucket.always_fail = 503
    assert_clean_failure(cleanup(pipe_env, repo, full_name, bitbucket), "nothing was deleted")
    bitbucket.always_fail = None
    bitbucket.pull_requests.clear()  # Bitbucket knows no such pull request
    assert_clean_failure(cleanup(pipe_env, repo, full_name, bitbucket), "#41", "404")
    unreachable = {"BITBUCKET_ACCESS_TOKEN": TOKEN, "BITBUCKET_API_URL": "http://127.0.0.1:9/2.0"}
    assert_clean_failure(
        step(pipe_env, repo, sha, full_name, ACTION="cleanup-previews", **unreachable), "could not be reached"
    )
    assert read_deployment(prefect_server, target) is not None


SLOW_FLOW = """\
import time

from prefect import flow, get_run_logger


@flow
def slow(seconds: float = 0.0) -> str:
    get_run_logger().info("code marker: {marker}")
    time.sleep(seconds)
    return "{marker}"
"""

# Production settings a preview must not take: a schedule, a trigger, a clone that follows main.
SCHEDULED_YAML = """\
name: preview-tests
pull:
  - prefect.deployments.steps.git_clone:
      repository: "{{{{ $BITBUCKET_CLONE_DIR }}}}"
      branch: main
deployments:
  - name: {name}
    entrypoint: flows/slow.py:slow
    schedules:
      - cron: "0 3 * * *"
    triggers:
      - enabled: true
        match:
          prefect.resource.id: "never.*"
        expect:
          - "never.happens"
    work_pool:
      name: pipe-tests
"""


def test_a_preview_drops_schedules_and_triggers_runs_the_pr_commit_and_its_running_runs_are_cancelled(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, bitbucket: BitbucketStandIn
) -> None:
    full_name = repository()
    repo.write("flows/slow.py", SLOW_FLOW.format(marker="main-code"))
    repo.write("prefect.yaml", SCHEDULED_YAML.format(name=repo.a))
    repo.commit("main")
    repo.git("checkout", "-q", "-b", BRANCH)
    repo.write("flows/slow.py", SLOW_FLOW.format(marker="pr-code"))
    sha = repo.commit("the pull request's change")

    output = ok(preview(pipe_env, repo, sha, full_name, 51, DEPLOYMENT=f"slow/{repo.a}", PREVIEW_RUN="true"))
    assert "code marker: pr-code" in output  # the clone of main was pinned to the commit
    deployed = read_deployment(prefect_server, f"slow/{repo.a}-pr-51")
    assert deployed.schedules == []
    clone = deployed.pull_steps[0]["prefect.deployments.steps.git_clone"]
    assert clone["commit_sha"] == sha and "branch" not in clone
    with sdk_client(prefect_server) as client:
        assert client.read_resource_related_automations(f"prefect.deployment.{deployed.id}") == []
        running = client.create_flow_run_from_deployment(deployed.id, parameters={"seconds": 300})
        deadline = time.monotonic() + 90
        while client.read_flow_run(running.id).state.type.value != "RUNNING":
            assert time.monotonic() < deadline, "the long run never started"
            time.sleep(0.5)

    set_states(bitbucket, full_name, {51: "DECLINED"})
    done = ok(cleanup(pipe_env, repo, full_name, bitbucket))
    assert f"Cancelling flow run {running.name}" in done and "it was RUNNING" in done
    assert read_deployment(prefect_server, f"slow/{repo.a}-pr-51") is None
    with sdk_client(prefect_server) as client:
        assert client.read_flow_run(running.id).state.type.value == "CANCELLED"


def test_a_stopped_cleanup_stops_at_once_and_deletes_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, bitbucket: BitbucketStandIn
) -> None:
    """Bitbucket answers slowly; the step is stopped while it asks: the pipe ends within seconds, says
    nothing was deleted, and nothing was."""
    full_name = repository()
    sha = repo.standard()
    target = f"pinned-code/{repo.a}-pr-71"
    ok(preview(pipe_env, repo, sha, full_name, 71, DEPLOYMENT=f"pinned-code/{repo.a}"))
    set_states(bitbucket, full_name, {71: "MERGED"})
    bitbucket.delay = 8.0
    workspace, slug = full_name.split("/")
    env = {
        **deploy_env(pipe_env, repo, sha, ACTION="cleanup-previews", BITBUCKET_BRANCH="main"),
        "BITBUCKET_REPO_FULL_NAME": full_name,
        "BITBUCKET_WORKSPACE": workspace,
        "BITBUCKET_REPO_SLUG": slug,
        "BITBUCKET_ACCESS_TOKEN": TOKEN,
        "BITBUCKET_API_URL": bitbucket.api_url,
        "PYTHONPATH": str(ROOT),
        "PYTHONSAFEPATH": "1",
    }
    step = BackgroundPipe(env, cwd=repo.path)
    try:
        asking = lambda _: any("/pullrequests/" in r.path for r in bitbucket.received)  # noqa: E731 - on arrival
        assert step.wait_for(asking, timeout=60), step.output
        code, took = step.stop(timeout=15)
    finally:
        step.kill()
    assert code == 143 and took < 5, (code, took, step.output)
    assert "stopped before any preview was deleted" in step.output, step.output
    assert read_deployment(prefect_server, target) is not None


def test_labelling_a_deployment_changes_nothing_else(prefect_server: PrefectServer) -> None:
    assert_labelling_changes_nothing_else(prefect_server)
