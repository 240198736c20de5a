"""The orchestration in pipe/run.py, without a server: a fake PrefectApi records what the pipe asks of it.

The end-to-end tests (tests/test_pipe.py, tests/test_fanout.py) run the same code against a real
server; these pin the decisions themselves: the verdict, the idempotency key, what a run request
carries, and that a failed creation cancels the runs already created.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from pipe import config as pipe_config
from pipe import run
from pipe.build import Build
from pipe.errors import ParameterError, PrefectError, RunFailed, Stopped, WaitTimeout
from pipe.outcome import RunInfo, RunResult
from tests.support.pipe import BITBUCKET_ENV

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "commit_sha": {"type": "string"},
        "build_number": {"type": "integer"},
    },
}


@dataclass
class FakeDeployment:
    name: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    parameter_openapi_schema: dict[str, Any] = field(default_factory=lambda: SCHEMA)
    parameters: dict[str, Any] = field(default_factory=lambda: {"name": "world"})
    version: str | None = "1"


@dataclass
class FakeFlowRun:
    id: uuid.UUID
    name: str
    created: datetime


class FakeApi:
    """The part of PrefectApi that run.py uses; ``fail_on`` names deployments whose creation fails."""

    def __init__(self, api_url: str = "http://127.0.0.1:4200/api", fail_on: set[str] | None = None) -> None:
        self.api_url = api_url
        self.fail_on = fail_on or set()
        self.deployments: dict[str, FakeDeployment] = {}
        self.created: list[tuple[uuid.UUID, dict[str, Any]]] = []
        self.cancelled: list[str] = []

    async def read_deployment(self, ref: pipe_config.DeploymentRef) -> FakeDeployment:
        return self.deployments.setdefault(ref.text, FakeDeployment(ref.text))

    async def deployment_label(self, deployment: FakeDeployment) -> str:
        return deployment.name

    async def create_flow_run(self, deployment_id: uuid.UUID, **fields: Any) -> tuple[FakeFlowRun, bool]:
        name = next(d.name for d in self.deployments.values() if d.id == deployment_id)
        if name in self.fail_on:
            raise PrefectError(f"The Prefect API refused to create a run of {name}")
        self.created.append((deployment_id, fields))
        return FakeFlowRun(uuid.uuid4(), f"run-{len(self.created)}", datetime.now(UTC)), True

    def flow_run_url(self, flow_run_id: Any) -> str:
        return f"http://127.0.0.1:4200/runs/flow-run/{flow_run_id}"

    def deployment_url(self, deployment_id: Any) -> str:
        return f"http://127.0.0.1:4200/deployments/deployment/{deployment_id}"

    async def cancel(self, flow_run_id: Any) -> str:
        self.cancelled.append(str(flow_run_id))
        return "CANCELLING"


def load(**extra: str) -> pipe_config.Config:
    env = {**BITBUCKET_ENV, "PREFECT_API_URL": "http://127.0.0.1:4200/api", "DEPLOYMENT": "greet/ci", **extra}
    return pipe_config.load(env)


def plans_for(config: pipe_config.Config, api: FakeApi) -> list[run.Plan]:
    return asyncio.run(run.resolve(config, api, config.targets))  # type: ignore[arg-type]


# -- the request ---------------------------------------------------------------------------------


def test_a_request_carries_the_commit_the_users_parameters_and_the_links_back() -> None:
    config = load(PARAMETERS='{"name": "ci"}', TAGS_COUNT="1", TAGS_0="nightly")
    [plan] = plans_for(config, FakeApi())
    request = plan.request
    assert request.parameters == {
        "name": "ci",
        "commit_sha": BITBUCKET_ENV["BITBUCKET_COMMIT"],
        "build_number": 42,  # shaped to the declared type
    }
    assert request.tags[0] == "nightly" and "commit:0f3c1e2" in request.tags and "branch:main" in request.tags
    assert request.labels["bitbucket.commit"] == BITBUCKET_ENV["BITBUCKET_COMMIT"]
    assert request.name == "data-pipelines-build-42-main-0f3c1e2"
    assert "labels" in request.create_fields() and "job_variables" not in request.create_fields()


def test_commit_parameters_false_sends_only_what_the_user_gave() -> None:
    [plan] = plans_for(load(COMMIT_PARAMETERS="false", PARAMETERS='{"name": "ci"}'), FakeApi())
    assert plan.request.parameters == {"name": "ci"}  # the deployment's defaults stay on the server


def test_an_undeclared_parameter_of_one_of_several_deployments_names_it() -> None:
    config = load(
        DEPLOYMENT="", DEPLOYMENTS_COUNT="2", DEPLOYMENTS_0="a/x", DEPLOYMENTS_1="b/y", PARAMETERS='{"nope": 1}'
    )
    with pytest.raises(ParameterError) as caught:
        plans_for(config, FakeApi())
    assert caught.value.message.startswith("a/x: ")


# -- one run per step attempt --------------------------------------------------------------------


def test_the_idempotency_key_is_one_per_step_attempt_and_deployment() -> None:
    build = Build.from_env(BITBUCKET_ENV)
    first = run.idempotency_key(None, build, "dep-1")
    assert first == run.idempotency_key(None, build, "dep-1")
    assert first != run.idempotency_key(None, build, "dep-2")
    rerun = Build.from_env({**BITBUCKET_ENV, "BITBUCKET_STEP_RUN_NUMBER": "2"})
    assert first != run.idempotency_key(None, rerun, "dep-1")
    assert run.idempotency_key("nightly-2026-12-01", build, "dep-1").endswith(":user:nightly-2026-12-01")


def test_outside_pipelines_every_invocation_gets_its_own_key() -> None:
    local = Build.from_env({})
    assert run.idempotency_key(None, local, "d") != run.idempotency_key(None, local, "d")


# -- creating ------------------------------------------------------------------------------------


def test_a_failed_creation_cancels_the_runs_already_created() -> None:
    config = load(DEPLOYMENT="", DEPLOYMENTS_COUNT="3", DEPLOYMENTS_0="a/x", DEPLOYMENTS_1="b/y", DEPLOYMENTS_2="c/z")
    api = FakeApi(fail_on={"b/y"})
    plans = plans_for(config, api)
    with pytest.raises(PrefectError, match="b/y"):
        asyncio.run(run.create_all(api, plans))  # type: ignore[arg-type]
    assert len(api.created) == 1  # one at a time on a self-hosted server: c/z is never created
    assert len(api.cancelled) == 1


def test_on_prefect_cloud_runs_are_created_together_and_the_rest_cancelled() -> None:
    config = load(DEPLOYMENT="", DEPLOYMENTS_COUNT="3", DEPLOYMENTS_0="a/x", DEPLOYMENTS_1="b/y", DEPLOYMENTS_2="c/z")
    api = FakeApi("https://api.prefect.cloud/api/accounts/a/workspaces/w", fail_on={"b/y"})
    plans = plans_for(config, api)
    with pytest.raises(PrefectError):
        asyncio.run(run.create_all(api, plans))  # type: ignore[arg-type]
    assert len(api.created) == 2 and len(api.cancelled) == 2


# -- the verdict ---------------------------------------------------------------------------------


def result(state: str = "COMPLETED", name: str = "greet/ci", **overrides: Any) -> RunResult:
    info = RunInfo(name, "dep", str(uuid.uuid4()), "run-1", "http://127.0.0.1:4200/runs/flow-run/x")
    return RunResult(run=info, state_type=state, state_name=state.title(), **overrides)


def test_the_verdict_passes_only_when_every_run_completed() -> None:
    config = load()
    assert run.verdict(config, [result()]) == 0
    assert run.verdict(config, [result(), result(name="b/y")]) == 0
    with pytest.raises(RunFailed, match="ended Failed: boom"):
        run.verdict(config, [result("FAILED", state_message="boom")])
    with pytest.raises(RunFailed, match="1 of 2 flow runs did not complete: b/y"):
        run.verdict(config, [result(), result("CRASHED", name="b/y")])


def test_a_timeout_is_its_own_verdict() -> None:
    config = load(TIMEOUT="30")
    with pytest.raises(WaitTimeout, match="TIMEOUT=30s; cancellation requested"):
        run.verdict(config, [result("RUNNING", timed_out=True, cancel_requested=True)])
    with pytest.raises(WaitTimeout):
        run.verdict(config, [result("RUNNING", timed_out=True), result("RUNNING", name="b/y", timed_out=True)])


def test_runs_of_several_deployments_have_names_that_tell_them_apart() -> None:
    config = load(DEPLOYMENT="", DEPLOYMENTS_COUNT="2", DEPLOYMENTS_0="etl/daily", DEPLOYMENTS_1="etl/weekly")
    names = [plan.request.name for plan in plans_for(config, FakeApi())]
    assert names == [
        "data-pipelines-build-42-main-0f3c1e2-etl-daily",
        "data-pipelines-build-42-main-0f3c1e2-etl-weekly",
    ]


def test_a_run_left_behind_is_named_by_its_state() -> None:
    config = load(TIMEOUT="30", CANCEL_ON_TIMEOUT="false")
    with pytest.raises(WaitTimeout, match="left Scheduled \\(CANCEL_ON_TIMEOUT=false\\)"):
        run.verdict(config, [result("SCHEDULED", timed_out=True)])
    with pytest.raises(WaitTimeout, match="left running \\(CANCEL_ON_TIMEOUT=false\\)"):
        run.verdict(config, [result("RUNNING", timed_out=True)])


def test_a_run_no_worker_took_says_so_and_names_the_pool() -> None:
    config = load(TIMEOUT="25")
    stuck = result(
        "SCHEDULED", timed_out=True, cancel_requested=True, never_started=True, work_pool="k8s", live_workers=0
    )
    with pytest.raises(WaitTimeout) as caught:
        run.verdict(config, [stuck])
    assert "was not taken by any worker within TIMEOUT=25s" in str(caught.value)
    assert "work pool 'k8s' has no live worker" in str(caught.value)
    assert "raise TIMEOUT" not in str(caught.value).lower()


def test_a_crash_in_a_pull_step_points_at_the_workers_log() -> None:
    crashed = result("CRASHED", crashed_before_flow=True, last_step="git_clone", work_pool="k8s")
    with pytest.raises(RunFailed) as caught:
        run.verdict(load(), [crashed])
    assert "crashed in its pull step 'git_clone'" in str(caught.value)
    assert "log of the worker of work pool 'k8s'" in str(caught.value)


def test_a_stop_while_creating_on_cloud_cancels_what_was_created() -> None:
    config = load(DEPLOYMENT="", DEPLOYMENTS_COUNT="2", DEPLOYMENTS_0="a/x", DEPLOYMENTS_1="b/y")
    api = FakeApi("https://api.prefect.cloud/api/accounts/a/workspaces/w")
    plans = plans_for(config, api)
    slow = asyncio.Event()
    original = api.create_flow_run

    async def create(deployment_id: uuid.UUID, **fields: Any) -> tuple[FakeFlowRun, bool]:
        if len(api.created) >= 1:
            await slow.wait()  # the second creation hangs until the step is stopped
        return await original(deployment_id, **fields)

    api.create_flow_run = create  # type: ignore[method-assign]

    async def main() -> None:
        task = asyncio.ensure_future(run.create_all(api, plans))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        task.cancel()
        await task

    with pytest.raises(Stopped, match="stopped while creating flow runs; run-1 was cancelled"):
        asyncio.run(main())
    assert len(api.cancelled) == 1
