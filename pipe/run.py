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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipe import console, outputs, parameters
from pipe.auth import authenticate
from pipe.config import Config, DeploymentRef
from pipe.credentials import Credential
from pipe.errors import RunFailed, Stopped, WaitTimeout
from pipe.metadata import CommitMetadata
from pipe.outcome import RunInfo, RunResult
from pipe.prefect_api import PrefectApi
from pipe.waiter import Waiter

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse

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
            assert config.deployment is not None
            deployment = await api.read_deployment(config.deployment)
            label = config.deployment.text if not config.deployment.is_id else await api.deployment_label(deployment)
            request = build_request(config, deployment, meta)
            if config.dry_run:
                show_dry_run(config, label, deployment, request)
                return 0
            try:
                return await trigger_and_follow(config, api, label, deployment, request)
            finally:
                console.debug(f"{api.requests} HTTP requests sent to the Prefect API")
    finally:
        credential.close()


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


def build_request(config: Config, deployment: DeploymentResponse, meta: CommitMetadata) -> RunRequest:
    schema = deployment.parameter_openapi_schema
    commit = parameters.commit_values(schema, meta.parameters()) if config.commit_parameters else {}
    params = parameters.resolve(schema, deployment.parameters, config.parameters, commit)
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


def show_dry_run(config: Config, label: str, deployment: DeploymentResponse, request: RunRequest) -> None:
    from pipe import identity

    console.info(f"DRY_RUN: deployment {label} ({deployment.id}) resolved; nothing was created")
    for line in identity.describe(config.variables, config.env):
        console.info(line)
    body = json.dumps(request.create_fields(), indent=2, sort_keys=True, default=str)
    console.plain(f"Would create a flow run with:\n{body}")
    console.success("Dry run passed: the deployment exists and the parameters match its schema")


async def trigger_and_follow(
    config: Config, api: PrefectApi, label: str, deployment: DeploymentResponse, request: RunRequest
) -> int:
    reporter = _reporter(config)
    requested_at = datetime.now(UTC)
    flow_run = await api.create_flow_run(deployment.id, **request.create_fields())
    info = RunInfo(
        deployment_name=label,
        deployment_id=str(deployment.id),
        flow_run_id=str(flow_run.id),
        flow_run_name=flow_run.name,
        flow_run_url=api.flow_run_url(flow_run.id),
        deployment_version=getattr(deployment, "version", None),
        created=flow_run.created,
    )
    if flow_run.created and flow_run.created < requested_at - timedelta(seconds=30):
        console.info(
            "This step attempt already started a flow run (same idempotency key): following it, not starting another"
        )
    console.info(f"Flow run {info.flow_run_name} created for {info.deployment_name}: {info.flow_run_url}")
    outputs.write(config.env, info, None)
    await asyncio.to_thread(reporter.run_started, info)  # blocking HTTP: keep the loop (and logs) going
    if not config.wait:
        console.success(f"Flow run {info.flow_run_name} created (WAIT=false): {info.flow_run_url}")
        return 0

    try:
        result = await follow(config, api, info)
    except asyncio.CancelledError:
        result = await stop(config, api, info)
        await finish(config, reporter, result)
        raise Stopped(f"The step was stopped; flow run {info.flow_run_name} {_stop_note(result)}") from None

    await finish(config, reporter, result)
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


async def follow(config: Config, api: PrefectApi, info: RunInfo) -> RunResult:
    deadline = time.monotonic() + config.timeout
    waiter = Waiter(api, uuid.UUID(info.flow_run_id), deadline, stream_logs=config.stream_logs)
    outcome = await waiter.wait()
    flow_run = outcome.flow_run
    if outcome.timed_out:
        result = _result(info, flow_run)
        result.timed_out = True
        if config.cancel_on_timeout:
            await _cancel(api, info, result)
        return result
    result = _result(info, flow_run)
    if result.state_type in ("FAILED", "CRASHED"):
        result.failing_task = await api.failing_task(flow_run.id)
    return result


async def stop(config: Config, api: PrefectApi, info: RunInfo) -> RunResult:
    """The step is being stopped: cancel the remote run so nothing keeps running unseen."""
    console.warning("Stop requested: cancelling the flow run")
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


async def finish(config: Config, reporter: Any, result: RunResult) -> None:
    outputs.write(config.env, result.run, result)
    summary(result)
    await asyncio.to_thread(reporter.run_finished, result)


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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def _stop_note(result: RunResult) -> str:
    return "was cancelled" if result.cancel_requested else "may still be running"


def _reporter(config: Config) -> Any:
    from pipe.bitbucket import Reporter

    return Reporter.from_config(config.variables, config.env)
