"""The pipe, in the order a user expects it:
configure → authenticate → resolve → trigger → wait → report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pipe import console, outputs, parameters, presentation
from pipe.auth import authenticate
from pipe.build import Build
from pipe.config import Config, DeploymentRef, Target
from pipe.credentials import Credential
from pipe.deadlines import in_background
from pipe.errors import ParameterError, PipeError, PrefectError, RunFailed, Stopped, WaitTimeout
from pipe.outcome import RunInfo, RunResult
from pipe.prefect_api import PrefectApi
from pipe.urls import is_cloud
from pipe.waiter import Waiter

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse

    from pipe.bitbucket.reporter import Reporter

T = TypeVar("T")
R = TypeVar("R")

# How long a cancellation (on timeout or stop) may take before the pipe gives up on confirming it.
CANCEL_GRACE_SECONDS = 10.0
# How long a stopped step waits for Bitbucket to take the final status and report.
STOP_REPORT_SECONDS = 3.0


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
    if not config.build.in_pipelines:
        console.info(f"Not in Bitbucket Pipelines: the commit comes from {config.build.origin}")
    globs = None
    if config.dry_run:
        presentation.identity(config)
        # Before the token exchange: a gateway refuses that too when no rule matches the step at all.
        from pipe.identity.gateway_rule import step_globs

        if (globs := step_globs(config)) is not None:
            presentation.gateway_rule(config, globs)
    # In a thread: a stop during an identity hop (each bounded by its own budget) ends the step at once.
    credential = await in_background(authenticate, config)
    try:
        targets = config.targets
        if config.action == "cleanup-previews":
            from pipe.preview.cleanup import cleanup

            return await cleanup(config, credential)
        if config.deploys:
            names = await deploy_in_thread(config, credential)
            if config.action == "deploy" or config.dry_run:
                verb = "would be deployed (DRY_RUN)" if config.dry_run else "deployed"
                if not config.dry_run:
                    await record_deployments(config, credential, names)
                console.success(f"{', '.join(names)} {verb}")
                return 0
            if config.action == "preview":
                if not await publish_previews(config, credential, names):
                    return 0
                targets = [Target(DeploymentRef(name), source="PREVIEW_RUN") for name in names]
            else:
                targets = what_was_deployed(targets, names)
        async with PrefectApi(config.api_url, credential, config.ui_url) as api:
            plans = await resolve(config, api, targets)
            if config.dry_run:
                if globs is None:  # deployments given by id: named now
                    from pipe.identity.gateway_rule import literal

                    presentation.gateway_rule(config, [literal(plan.label) for plan in plans])
                presentation.dry_run(plans)
                return 0
            if config.action == "deploy-and-run":
                deployed = [(plan.label, plan.deployment) for plan in plans]
                outputs.write_records(config.outputs, outputs.DEPLOYMENTS, deployment_records(api, deployed))
            try:
                return await trigger_and_follow(config, api, plans)
            finally:
                console.debug(f"{api.requests} HTTP requests sent to the Prefect API")
    finally:
        credential.close()


async def resolve(config: Config, api: PrefectApi, targets: list[Target]) -> list[Plan]:
    """Read every deployment and check every request first: bad input creates nothing."""
    deployments = await asyncio.gather(*(api.read_deployment(target.ref) for target in targets))
    plans = []
    for target, deployment in zip(targets, deployments, strict=True):
        label = target.ref.text if not target.ref.is_id else await api.deployment_label(deployment)
        console.debug(
            f"Deployment {label} resolved: id {deployment.id}, version {getattr(deployment, 'version', None)}, "
            f"work pool {getattr(deployment, 'work_pool_name', None)}, queue {getattr(deployment, 'work_queue_name', None)}"
        )
        try:
            request = build_request(config, target, deployment, label if len(targets) > 1 else None)
        except ParameterError as exc:
            if len(targets) == 1:
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


async def publish_previews(config: Config, credential: Credential, names: list[str]) -> bool:
    """Label the previews just deployed and report them; whether they are to be run now (PREVIEW_RUN)."""
    from pipe.preview.publish import label_previews

    unlabelled = f"{', '.join(names)} deployed but not labelled, so the clean-up cannot find them yet"
    try:
        async with PrefectApi(config.api_url, credential, config.ui_url) as api:
            previews = await label_previews(api, config, names)
    except PipeError as exc:
        raise PrefectError(f"{exc.message}; {unlabelled}", exc.fix or "re-run this step to label them") from None
    except asyncio.CancelledError:
        raise Stopped(f"The step was stopped while labelling the previews; {unlabelled}: re-run the step") from None
    records = [outputs.deployment_entry(p.name, p.deployment_id, p.url, p.version) for p in previews]
    outputs.write_records(config.outputs, outputs.DEPLOYMENTS, records)
    if config.preview.run:
        return True
    reporter = _reporter(config)
    await asyncio.gather(*(in_background(reporter.preview_deployed, preview) for preview in previews))
    console.success(f"{', '.join(names)} deployed as previews of pull request #{config.build.pull_request_id}")
    return False


async def record_deployments(config: Config, credential: Credential, names: list[str]) -> None:
    """ACTION=deploy: the deployments as Prefect registered them, for later steps (a deploy that went
    through is not failed for its outputs)."""
    if not (config.outputs.shared_dir or config.outputs.variables_path):
        return
    try:
        async with PrefectApi(config.api_url, credential, config.ui_url) as api:
            found = await asyncio.gather(*(api.read_deployment(DeploymentRef(name)) for name in names))
            records = deployment_records(api, list(zip(names, found, strict=True)))
    except PipeError as exc:
        console.warning(f"{', '.join(names)} deployed, but not read back for the step outputs: {exc.message}")
        return
    outputs.write_records(config.outputs, outputs.DEPLOYMENTS, records)


def deployment_records(api: PrefectApi, deployed: list[tuple[str, DeploymentResponse]]) -> list[dict[str, Any]]:
    return [
        outputs.deployment_entry(name, str(d.id), api.deployment_url(d.id), getattr(d, "version", None))
        for name, d in deployed
    ]


def what_was_deployed(targets: list[Target], names: list[str]) -> list[Target]:
    """deploy-and-run runs each deployment by the name Prefect registered (DEPLOYMENT may be a bare name
    or use the function's name); deploy() returns one name per DEPLOYMENT/DEPLOYMENTS entry, in order."""
    return [
        dataclasses.replace(target, ref=DeploymentRef(text=name)) for target, name in zip(targets, names, strict=True)
    ]


def build_request(
    config: Config, target: Target, deployment: DeploymentResponse, fan_out_label: str | None = None
) -> RunRequest:
    """The run request for one deployment; ``fan_out_label`` (several deployments in one step) goes into
    the default run name."""
    build = config.build
    schema = deployment.parameter_openapi_schema
    commit = parameters.commit_values(schema, build.parameters()) if config.commit_parameters else {}
    user = {**config.parameters, **target.parameters}  # a DEPLOYMENTS entry's own parameters win
    params = parameters.resolve(schema, deployment.parameters, user, commit)
    return RunRequest(
        parameters=params,
        tags=list(dict.fromkeys([*config.tags, *build.tags()])),
        name=config.flow_run_name or build.default_run_name(fan_out_label),
        idempotency_key=idempotency_key(config.idempotency_key, build, str(deployment.id)),
        labels=build.labels(),
        job_variables=config.job_variables,
        work_queue_name=config.work_queue_name,
    )


def idempotency_key(user_key: str | None, build: Build, deployment_id: str) -> str:
    """One run per step attempt: Bitbucket's "Rerun failed steps" bumps the run number and so
    starts a fresh run, while a retried request within the attempt finds the run it created.
    Prefect scopes keys per flow, so the deployment id is part of the key."""
    if user_key:
        base = f"user:{user_key}"
    elif build.pipeline_uuid and build.step_uuid:
        base = f"bitbucket:{build.pipeline_uuid}:{build.step_uuid}:{build.step_run_number or '1'}"
    else:
        base = f"local:{uuid.uuid4()}"
    return f"prefect-trigger:{deployment_id}:{base}"


async def trigger_and_follow(config: Config, api: PrefectApi, plans: list[Plan]) -> int:
    reporter = _reporter(config)
    runs = await create_all(api, plans)
    outputs.write(config.outputs, [(run, None) for run in runs])
    try:
        started = functools.partial(reporter.run_started, awaited=config.wait)
        await asyncio.gather(*(in_background(started, run) for run in runs))  # blocking HTTP
        if not config.wait:
            for run in runs:
                console.success(f"Flow run {run.flow_run_name} created (WAIT=false): {run.flow_run_url}")
            return 0
        results = await wait_for_all(config, api, runs)
    except asyncio.CancelledError:  # the step is being stopped: cancel what was created
        results = await for_each(api, runs, lambda run: stop(api, run))
        await finish_all(config, reporter, results, stopping=True)
        names = ", ".join(r.run.flow_run_name for r in results)
        raise Stopped(f"The step was stopped; flow run {names} {presentation.stop_note(results)}") from None

    try:
        await finish_all(config, reporter, results)
    except asyncio.CancelledError:  # stopped while reporting the end: the runs themselves are over
        states = ", ".join(f"{r.run.flow_run_name} {presentation.state_label(r)}" for r in results)
        raise Stopped(f"The step was stopped while reporting; the flow runs had ended ({states})") from None
    return verdict(config, results)


async def create_all(api: PrefectApi, plans: list[Plan]) -> list[RunInfo]:
    """Create the runs, concurrently on Prefect Cloud and one at a time on a self-hosted server: on its
    default SQLite database, concurrent writes are answered 503 (database busy) and Prefect's client
    then backs off for seconds (6 runs: 0.2 s one at a time, 2 to 56 s two or more at a time).
    If one cannot be created, cancel those that were and fail."""
    created: list[RunInfo | BaseException] = []
    if is_cloud(api.api_url):
        tasks = [asyncio.ensure_future(create(api, plan)) for plan in plans]
        try:
            created = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:  # the step is being stopped: cancel what was created
            done = [t.result() for t in tasks if t.done() and not t.cancelled() and t.exception() is None]
            await _stopped_while_creating(api, done)
    else:
        for plan in plans:
            try:
                created.append(await create(api, plan))
            except Exception as exc:
                created.append(exc)
                break  # the rest are not created at all
            except asyncio.CancelledError:  # the step is being stopped: cancel what was created
                await _stopped_while_creating(api, [c for c in created if isinstance(c, RunInfo)])
    runs = [c for c in created if isinstance(c, RunInfo)]
    errors = [c for c in created if isinstance(c, BaseException)]
    if errors:
        for run in runs:
            result = RunResult(run=run, state_type="CANCELLING", state_name="Cancelling")
            await _cancel(api, run, result)
        raise errors[0]
    return runs


async def _stopped_while_creating(api: PrefectApi, runs: list[RunInfo]) -> NoReturn:
    """Cancel the runs created before the stop and say so; a request still in flight may have created
    one more, which only Prefect can tell."""
    results = [await stop(api, run) for run in runs]
    created = f"{', '.join(run.flow_run_name for run in runs)} {presentation.stop_note(results)}" if runs else ""
    raise Stopped(
        "The step was stopped while creating flow runs; "
        + (f"{created}; " if created else "")
        + "a run whose creation was under way may still have been created: look for this build's tags in Prefect"
    ) from None


async def for_each(api: PrefectApi, items: list[T], call: Callable[[T], Awaitable[R]]) -> list[R]:
    """``call`` for each item: concurrently on Prefect Cloud, one at a time on a self-hosted server
    (see create_all)."""
    if is_cloud(api.api_url):
        return list(await asyncio.gather(*(call(item) for item in items)))
    return [await call(item) for item in items]


async def create(api: PrefectApi, plan: Plan) -> RunInfo:
    flow_run, new = await api.create_flow_run(plan.deployment.id, **plan.request.create_fields())
    run = RunInfo(
        deployment_name=plan.label,
        deployment_id=str(plan.deployment.id),
        flow_run_id=str(flow_run.id),
        flow_run_name=flow_run.name,
        flow_run_url=api.flow_run_url(flow_run.id),
        deployment_version=getattr(plan.deployment, "version", None),
        created=flow_run.created,
        deployment_url=api.deployment_url(plan.deployment.id),
    )
    if new:
        console.info(f"Flow run {run.flow_run_name} created for {run.deployment_name}: {run.flow_run_url}")
    else:  # the server answered with the run this step attempt's idempotency key already made
        console.info(
            f"Flow run {run.flow_run_name} of {run.deployment_name} was already created by an earlier attempt of "
            f"this step (same idempotency key) — following it, not starting another: {run.flow_run_url}"
        )
    return run


async def wait_for_all(config: Config, api: PrefectApi, runs: list[RunInfo]) -> list[RunResult]:
    """Follow every run on one events and one logs subscription; then cancel what outlived TIMEOUT
    (CANCEL_ON_TIMEOUT) and name the task that failed each failed run."""
    ids = [uuid.UUID(run.flow_run_id) for run in runs]
    labels = {id_: run.deployment_name for id_, run in zip(ids, runs, strict=True)} if len(runs) > 1 else {}
    deadline = time.monotonic() + config.timeout
    outcomes = await Waiter(api, ids, deadline, stream_logs=config.stream_logs, labels=labels).wait()
    results = []
    for id_, info in zip(ids, runs, strict=True):
        outcome = outcomes[id_]
        result = dataclasses.replace(_result(info, outcome.flow_run), timed_out=outcome.timed_out, **outcome.stall())
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
        names = ", ".join(f"{r.run.deployment_name} ({presentation.state_label(r)})" for r in failed)
        error = WaitTimeout if all(r.timed_out for r in failed) else RunFailed
        raise error(f"{len(failed)} of {len(results)} flow runs did not complete: {names}")
    [result] = results
    info = result.run
    if result.succeeded:
        console.success(f"Flow run {info.flow_run_name} completed in {presentation.duration(result.duration_seconds)}")
        return 0
    detail = f": {result.state_message}" if result.state_message else ""
    if result.timed_out:
        left = "left running" if result.state_type == "RUNNING" else f"left {result.state_name}"
        note = "cancellation requested" if result.cancel_requested else f"{left} (CANCEL_ON_TIMEOUT=false)"
        if result.never_started:  # raising TIMEOUT would not help: nothing runs it
            pool = f"work pool {result.work_pool!r}"
            queue = f", queue {result.work_queue!r}" if result.work_queue else ""
            workers = {None: pool, 0: f"{pool} has no live worker"}.get(
                result.live_workers, f"{pool} has {result.live_workers} live worker(s), none took it"
            )
            raise WaitTimeout(
                f"Flow run {info.flow_run_name} was not taken by any worker within TIMEOUT={config.timeout}s "
                f"(still {result.state_name}; {workers}); {note}",
                f"start a worker for {pool}{queue} (prefect worker start --pool ...), or check that the pool and "
                "queue are not paused or at their concurrency limit",
            )
        raise WaitTimeout(
            f"Flow run {info.flow_run_name} did not finish within TIMEOUT={config.timeout}s; {note}",
            "raise TIMEOUT or look at the run in Prefect",
        )
    if result.crashed_before_flow:  # the cause is in the worker's log, not the run's
        where = f"in its pull step {result.last_step!r}" if result.last_step else "before its flow started"
        raise RunFailed(
            f"Flow run {info.flow_run_name} crashed {where}{detail}",
            f"the cause is in the log of the worker of work pool {result.work_pool!r}, not in the run's logs; fix "
            "the deployment's pull steps or what they need on the worker, then re-run",
        )
    raise RunFailed(f"Flow run {info.flow_run_name} ended {result.state_name}{detail}")


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


async def finish_all(config: Config, reporter: Reporter, results: list[RunResult], *, stopping: bool = False) -> None:
    outputs.write(config.outputs, [(result.run, result) for result in results])
    presentation.outcome(results)
    reports = asyncio.gather(*(in_background(reporter.run_finished, result) for result in results))
    try:
        # Each report call has its own deadline; a stopped step gives them only a moment.
        await asyncio.wait_for(reports, STOP_REPORT_SECONDS if stopping else None)
    except TimeoutError:
        console.warning("Bitbucket was not told how the run ended: the step is stopping")


def _reporter(config: Config) -> Reporter:
    from pipe.bitbucket import Reporter

    return Reporter.from_config(config.report, config.build)
