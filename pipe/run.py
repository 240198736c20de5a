"""The pipe, in the order a user expects it:
configure → authenticate → resolve → trigger → wait → report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pipe import console, outputs, parameters
from pipe.auth import authenticate
from pipe.config import Config, DeploymentRef, Target
from pipe.credentials import Credential
from pipe.errors import ParameterError, PipeError, RunFailed, Stopped, WaitTimeout
from pipe.metadata import CommitMetadata
from pipe.outcome import RunInfo, RunResult
from pipe.prefect_api import PrefectApi, is_cloud
from pipe.waiter import Waiter

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse

T = TypeVar("T")
R = TypeVar("R")

# How long a cancellation (on timeout or stop) may take before the pipe gives up on confirming it.
CANCEL_GRACE_SECONDS = 10.0


@dataclass
class RunRequest:
    """Everything sent to create the run (shown as is by DRY_RUN)."""

    parameters: dict[str, Any]
    tags: list[str]
    name: str | None
    idempotency_key: str
    labels: dict[str, str]
    job_variables: dict[str, Any] | None
    work_queue_name: str | None

    def create_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "parameters": self.parameters,
            "tags": self.tags,
            "idempotency_key": self.idempotency_key,
            "labels": self.labels,
        }
        if self.name:
            fields["name"] = self.name
        if self.job_variables is not None:
            fields["job_variables"] = self.job_variables
        if self.work_queue_name:
            fields["work_queue_name"] = self.work_queue_name
        return fields


@dataclass
class Plan:
    """One deployment resolved and its run request checked, before anything is created."""

    label: str  # flow-name/deployment-name
    deployment: DeploymentResponse
    request: RunRequest


async def run(config: Config) -> int:
    """Run ACTION and return the exit code (errors are raised as PipeError)."""
    meta = CommitMetadata.from_env(config.env)
    credential = authenticate(config)
    try:
        if config.action in ("deploy", "deploy-and-run"):
            names = await deploy_in_thread(config, credential)
            if config.action == "deploy" or config.dry_run:
                verb = "would be deployed (DRY_RUN)" if config.dry_run else "deployed"
                console.success(f"{', '.join(names)} {verb}")
                return 0
            config = run_what_was_deployed(config, names)
        async with PrefectApi(config.api_url, credential, config.ui_url) as api:
            plans = await resolve(config, api, meta)
            if config.dry_run:
                show_dry_run(config, plans)
                return 0
            try:
                return await trigger_and_follow(config, api, plans)
            finally:
                console.debug(f"{api.requests} HTTP requests sent to the Prefect API")
    finally:
        credential.close()


async def resolve(config: Config, api: PrefectApi, meta: CommitMetadata) -> list[Plan]:
    """Read every deployment and check every request first: bad input creates nothing."""
    deployments = await asyncio.gather(*(api.read_deployment(target.ref) for target in config.targets))
    plans = []
    for target, deployment in zip(config.targets, deployments, strict=True):
        label = target.ref.text if not target.ref.is_id else await api.deployment_label(deployment)
        try:
            request = build_request(config, target, deployment, meta)
        except ParameterError as exc:
            if len(config.targets) == 1:
                raise
            raise ParameterError(f"{label}: {exc.message}", exc.fix) from None
        plans.append(Plan(label, deployment, request))
    return plans


async def deploy_in_thread(config: Config, credential: Credential) -> list[str]:
    """``prefect deploy`` runs in a thread: a stopped step (SIGTERM cancels this task) stops the CLI too."""
    from pipe.deploy import deploy  # imported here: ACTION=run never pays for it

    stop = threading.Event()
    try:
        return await asyncio.to_thread(deploy, config, credential, cancel=stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def run_what_was_deployed(config: Config, names: list[str]) -> Config:
    """deploy-and-run runs each deployment by the name Prefect registered (DEPLOYMENT may be a bare name
    or use the function's name); deploy() returns one name per DEPLOYMENT/DEPLOYMENTS entry, in order."""
    refs = [DeploymentRef(text=name) for name in names]
    targets = [dataclasses.replace(target, ref=ref) for target, ref in zip(config.targets, refs, strict=True)]
    return dataclasses.replace(config, deployment=refs[0] if len(refs) == 1 else None, targets=targets)


def build_request(config: Config, target: Target, deployment: DeploymentResponse, meta: CommitMetadata) -> RunRequest:
    schema = deployment.parameter_openapi_schema
    commit = parameters.commit_values(schema, meta.parameters()) if config.commit_parameters else {}
    user = {**config.parameters, **target.parameters}  # a DEPLOYMENTS entry's own parameters win
    params = parameters.resolve(schema, deployment.parameters, user, commit)
    return RunRequest(
        parameters=params,
        tags=list(dict.fromkeys([*config.tags, *meta.tags()])),
        name=config.flow_run_name or meta.default_run_name(),
        idempotency_key=idempotency_key(config, meta, str(deployment.id)),
        labels=meta.labels(),
        job_variables=config.job_variables,
        work_queue_name=config.work_queue_name,
    )


def idempotency_key(config: Config, meta: CommitMetadata, deployment_id: str) -> str:
    """One run per step attempt: Bitbucket's "Rerun failed steps" bumps the run number and so
    starts a fresh run, while a retried request within the attempt finds the run it created.
    Prefect scopes keys per flow, so the deployment id is part of the key."""
    if config.idempotency_key:
        base = f"user:{config.idempotency_key}"
    elif meta.pipeline_uuid and meta.step_uuid:
        base = f"bitbucket:{meta.pipeline_uuid}:{meta.step_uuid}:{meta.step_run_number or '1'}"
    else:
        base = f"local:{uuid.uuid4()}"
    return f"prefect-trigger:{deployment_id}:{base}"


def show_dry_run(config: Config, plans: list[Plan]) -> None:
    from pipe import identity
    from pipe.identity import gateway_rule

    for line in identity.describe(config.variables, config.env):
        console.info(line)
    for line in gateway_rule.lines(config.variables, config.env, [plan.label for plan in plans]):
        console.info(line)
    for plan in plans:
        console.info(f"DRY_RUN: deployment {plan.label} ({plan.deployment.id}) resolved; nothing was created")
        body = json.dumps(plan.request.create_fields(), indent=2, sort_keys=True, default=str)
        console.plain(f"Would create a flow run of {plan.label} with:\n{body}")
    what = "the deployment exists" if len(plans) == 1 else f"all {len(plans)} deployments exist"
    console.success(f"Dry run passed: {what} and the parameters match")


async def trigger_and_follow(config: Config, api: PrefectApi, plans: list[Plan]) -> int:
    reporter = _reporter(config)
    runs = await create_all(api, plans)
    for run in runs:
        outputs.write(config.env, run, None)
    await asyncio.gather(*(asyncio.to_thread(reporter.run_started, run) for run in runs))  # blocking HTTP
    if not config.wait:
        for run in runs:
            console.success(f"Flow run {run.flow_run_name} created (WAIT=false): {run.flow_run_url}")
        return 0

    try:
        results = await wait_for_all(config, api, runs)
    except asyncio.CancelledError:
        results = await for_each(api, runs, lambda run: stop(api, run))
        await finish_all(config, reporter, results)
        names = ", ".join(r.run.flow_run_name for r in results)
        raise Stopped(f"The step was stopped; flow run {names} {_stop_note(results)}") from None

    await finish_all(config, reporter, results)
    return verdict(config, results)


async def create_all(api: PrefectApi, plans: list[Plan]) -> list[RunInfo]:
    """Create the runs, concurrently on Prefect Cloud and one at a time on a self-hosted server: on its
    default SQLite database, concurrent writes are answered 503 (database busy) and Prefect's client
    then backs off for seconds (6 runs: 0.2 s one at a time, 2 to 56 s two or more at a time).
    If one cannot be created, cancel those that were and fail."""
    created: list[RunInfo | BaseException] = []
    if is_cloud(api.api_url):
        created = await asyncio.gather(*(create(api, plan) for plan in plans), return_exceptions=True)
    else:
        for plan in plans:
            try:
                created.append(await create(api, plan))
            except Exception as exc:
                created.append(exc)
                break  # the rest are not created at all
            except asyncio.CancelledError:  # the step is being stopped: cancel what was created
                runs = [c for c in created if isinstance(c, RunInfo)]
                if not runs:
                    raise
                results = [await stop(api, run) for run in runs]
                names = ", ".join(run.flow_run_name for run in runs)
                raise Stopped(f"The step was stopped while creating flow runs; {names} {_stop_note(results)}") from None
    runs = [c for c in created if isinstance(c, RunInfo)]
    errors = [c for c in created if isinstance(c, BaseException)]
    if errors:
        for run in runs:
            result = RunResult(run=run, state_type="CANCELLING", state_name="Cancelling")
            await _cancel(api, run, result)
        raise errors[0]
    return runs


async def for_each(api: PrefectApi, items: list[T], call: Callable[[T], Awaitable[R]]) -> list[R]:
    """``call`` for each item: concurrently on Prefect Cloud, one at a time on a self-hosted server
    (see create_all)."""
    if is_cloud(api.api_url):
        return list(await asyncio.gather(*(call(item) for item in items)))
    return [await call(item) for item in items]


async def create(api: PrefectApi, plan: Plan) -> RunInfo:
    requested_at = datetime.now(UTC)
    flow_run = await api.create_flow_run(plan.deployment.id, **plan.request.create_fields())
    run = RunInfo(
        deployment_name=plan.label,
        deployment_id=str(plan.deployment.id),
        flow_run_id=str(flow_run.id),
        flow_run_name=flow_run.name,
        flow_run_url=api.flow_run_url(flow_run.id),
        deployment_version=getattr(plan.deployment, "version", None),
        created=flow_run.created,
    )
    if flow_run.created and flow_run.created < requested_at - timedelta(seconds=30):
        console.info(
            f"This step attempt already started flow run {run.flow_run_name} of {plan.label} (same idempotency key):"
            " following it, not starting another"
        )
    console.info(f"Flow run {run.flow_run_name} created for {run.deployment_name}: {run.flow_run_url}")
    return run


async def wait_for_all(config: Config, api: PrefectApi, runs: list[RunInfo]) -> list[RunResult]:
    """Follow every run on one events and one logs subscription; then cancel what outlived TIMEOUT
    (CANCEL_ON_TIMEOUT) and name the task that failed each failed run."""
    ids = [uuid.UUID(run.flow_run_id) for run in runs]
    prefixes = {id_: f"[{run.deployment_name}]" for id_, run in zip(ids, runs, strict=True)} if len(runs) > 1 else {}
    deadline = time.monotonic() + config.timeout
    outcomes = await Waiter(api, ids, deadline, stream_logs=config.stream_logs, prefixes=prefixes).wait()
    results = []
    for id_, info in zip(ids, runs, strict=True):
        result = _result(info, outcomes[id_].flow_run)
        result.timed_out = outcomes[id_].timed_out
        results.append(result)
    if config.cancel_on_timeout:
        await for_each(api, [r for r in results if r.timed_out], lambda r: _cancel(api, r.run, r))
    failed = [r for r in results if not r.timed_out and r.state_type in ("FAILED", "CRASHED")]
    if failed:
        try:
            names = await api.failing_tasks([uuid.UUID(r.run.flow_run_id) for r in failed])
        except PipeError as exc:  # the outcome is known; the task's name is a detail
            console.warning(f"Could not read which task failed: {exc.message}")
            names = {}
        for result in failed:
            result.failing_task = names.get(uuid.UUID(result.run.flow_run_id))
    return results


async def stop(api: PrefectApi, info: RunInfo) -> RunResult:
    """The step is being stopped: cancel the remote run so nothing keeps running unseen."""
    console.warning(f"Stop requested: cancelling flow run {info.flow_run_name}")
    result = RunResult(run=info, state_type="CANCELLING", state_name="Cancelling", stopped=True)
    await _cancel(api, info, result)
    return result


async def _cancel(api: PrefectApi, info: RunInfo, result: RunResult) -> None:
    try:
        state = await asyncio.wait_for(api.cancel(info.flow_run_id), timeout=CANCEL_GRACE_SECONDS)
        result.cancel_requested = True
        console.info(f"Cancellation of {info.flow_run_name} requested (server answered {state})")
    except (TimeoutError, Exception) as exc:
        console.warning(f"Could not cancel flow run {info.flow_run_name}: {exc}")


def verdict(config: Config, results: list[RunResult]) -> int:
    """Exit 0 only when every run completed; otherwise one line naming what did not."""
    failed = [r for r in results if not r.succeeded]
    if len(results) > 1:
        if not failed:
            console.success(f"All {len(results)} flow runs completed")
            return 0
        names = ", ".join(f"{r.run.deployment_name} ({_state_label(r)})" for r in failed)
        error = WaitTimeout if all(r.timed_out for r in failed) else RunFailed
        raise error(f"{len(failed)} of {len(results)} flow runs did not complete: {names}")
    [result] = results
    info = result.run
    if result.succeeded:
        console.success(f"Flow run {info.flow_run_name} completed in {_duration(result.duration_seconds)}")
        return 0
    if result.timed_out:
        note = "cancellation requested" if result.cancel_requested else "left running (CANCEL_ON_TIMEOUT=false)"
        raise WaitTimeout(
            f"Flow run {info.flow_run_name} did not finish within TIMEOUT={config.timeout}s; {note}",
            "raise TIMEOUT or look at the run in Prefect",
        )
    detail = f": {result.state_message}" if result.state_message else ""
    raise RunFailed(f"Flow run {info.flow_run_name} ended {result.state_name}{detail}")


def _state_label(result: RunResult) -> str:
    if result.timed_out:
        return f"timed out after TIMEOUT, {result.state_name}"
    if result.stopped:
        return "step stopped"
    return result.state_name


def _result(info: RunInfo, flow_run: FlowRun) -> RunResult:
    state = flow_run.state
    duration = None
    if flow_run.total_run_time and flow_run.total_run_time.total_seconds() > 0:
        duration = flow_run.total_run_time.total_seconds()
    elif flow_run.start_time and flow_run.end_time:
        duration = (flow_run.end_time - flow_run.start_time).total_seconds()
    return RunResult(
        run=info,
        state_type=state.type.value if state else "UNKNOWN",
        state_name=(state.name if state else None) or "Unknown",
        state_message=(state.message or None) if state else None,
        duration_seconds=duration,
    )


async def finish_all(config: Config, reporter: Any, results: list[RunResult]) -> None:
    for result in results:
        outputs.write(config.env, result.run, result)
    if len(results) == 1:
        summary(results[0])
    else:
        table(results)
    await asyncio.gather(*(asyncio.to_thread(reporter.run_finished, result) for result in results))


def summary(result: RunResult) -> None:
    run = result.run
    rows = [
        ("Deployment", run.deployment_name),
        ("Flow run", f"{run.flow_run_name} ({run.flow_run_id})"),
        (
            "State",
            result.state_name
            + (" (timed out)" if result.timed_out else "")
            + (" (step stopped)" if result.stopped else ""),
        ),
        ("Duration", _duration(result.duration_seconds)),
        ("Link", run.flow_run_url),
    ]
    if not result.succeeded and result.state_message:
        rows.append(("Error", result.state_message))
    if result.failing_task:
        rows.append(("Failed task", result.failing_task))
    width = max(len(k) for k, _ in rows)
    rule = "─" * 60
    console.plain(rule)
    for key, value in rows:
        console.plain(f" {key:<{width}}  {value}")
    console.plain(rule)


def table(results: list[RunResult]) -> None:
    """One screen for many runs: a row each, then the errors."""
    rows = [("Deployment", "State", "Duration", "Link")]
    rows += [
        (r.run.deployment_name, _state_label(r), _duration(r.duration_seconds), r.run.flow_run_url) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    rule = "─" * (sum(widths) + 6 + max(len(row[3]) for row in rows))
    console.plain(rule)
    for row in rows:
        console.plain(f" {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    for r in results:
        if not r.succeeded and (r.state_message or r.failing_task):
            task = f" (task {r.failing_task})" if r.failing_task else ""
            console.plain(f" {r.run.deployment_name}{task}: {r.state_message or r.state_name}")
    console.plain(rule)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def _stop_note(results: list[RunResult]) -> str:
    if all(r.cancel_requested for r in results):
        return "was cancelled" if len(results) == 1 else "were cancelled"
    return "may still be running"


def _reporter(config: Config) -> Any:
    from pipe.bitbucket import Reporter

    return Reporter.from_config(config.variables, config.env)
