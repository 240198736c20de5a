"""ACTION=cleanup-previews: delete this repository's preview deployments whose pull request is no longer
open (Bitbucket says merged, declined or superseded) or, with ``PREVIEW_TTL_DAYS``, that were not
updated for that long.

A deployment is one of this repository's previews only with all three marks (:mod:`~pipe.preview.marks`):
production deployments and other repositories' previews are never touched. Every pull request's state
is read before anything is deleted, so an answer that cannot be read deletes nothing. A preview's runs
that are still going are cancelled first (said in the log), then it is deleted; a table says what was
deleted and kept, and why. ``DRY_RUN`` prints the table and deletes nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipe import console, presentation
from pipe.config import Config
from pipe.credentials import Credential
from pipe.deadlines import in_background
from pipe.errors import PrefectError, Stopped
from pipe.outcome import FINAL_STATES
from pipe.prefect_api import PrefectApi
from pipe.preview import deployments, marks
from pipe.remote_text import one_line

if TYPE_CHECKING:
    from prefect.client.schemas.responses import DeploymentResponse

# How long a deleted preview's running flow runs get to end after their cancellation is asked.
CANCEL_WAIT_SECONDS = 30.0


@dataclass
class Decision:
    """One preview and what the clean-up does with it."""

    name: str  # flow-name/deployment-name
    deployment: DeploymentResponse
    pr: str
    delete: bool
    why: str
    done: str = ""


async def cleanup(config: Config, credential: Credential) -> int:
    repository = config.build.repository or ""
    async with PrefectApi(config.api_url, credential, config.ui_url) as api:
        await deployments.require_deployment_labels(api, "finding the preview deployments")
        tagged = await deployments.deployments_tagged(api, marks.TAG)
        found = [(d, pr) for d in tagged if (pr := marks.preview_of(d, repository, config.preview.name_template))]
        others = len(tagged) - len(found)
        left = f"; {others} other deployment(s) tagged {marks.TAG!r} left alone" if others else ""
        if not found:
            console.success(f"No preview deployments of {repository} on {api.host}{left}")
            return 0
        flows = await deployments.flow_names(api, [deployment.flow_id for deployment, _ in found])
        states = await pull_request_states(config, sorted({pr for _, pr in found}, key=int))
        now = datetime.now(UTC)
        decisions = [
            decide(f"{flows.get(d.flow_id, '?')}/{d.name}", d, pr, states.get(pr), config.preview.ttl_days, now)
            for d, pr in found
        ]
        doomed = [d for d in decisions if d.delete]
        if config.dry_run:
            for decision in decisions:
                decision.done = "would delete (DRY_RUN)" if decision.delete else "keep"
            show(decisions)
            console.success(
                f"DRY_RUN: {len(doomed)} of {len(decisions)} preview(s) would be deleted; nothing was deleted{left}"
            )
            return 0
        failed = []
        for decision in decisions:
            decision.done = "kept" if not decision.delete else "not reached (the step was stopped)"
        try:
            for decision in doomed:
                try:
                    decision.done = await remove(api, decision)
                except PrefectError as exc:
                    decision.done = "not deleted"
                    failed.append(f"{one_line(decision.name)}: {exc.message}")
        except asyncio.CancelledError:
            show(decisions)
            deleted = sum(d.done.startswith("deleted") for d in doomed)
            raise Stopped(
                f"The step was stopped during the clean-up: {deleted} of {len(doomed)} preview(s) deleted (table "
                "above); re-run it for the rest"
            ) from None
        show(decisions)
    deleted = sum(d.done.startswith("deleted") for d in doomed)
    if failed:
        raise PrefectError(
            f"{len(failed)} of {len(doomed)} preview(s) could not be deleted ({'; '.join(failed)})",
            "re-run the clean-up; the others were deleted",
        )
    console.success(f"{deleted} preview(s) of {repository} deleted, {len(decisions) - deleted} kept{left}")
    return 0


async def pull_request_states(config: Config, ids: list[str]) -> dict[str, str]:
    """Each pull request's state from Bitbucket (none without a credential: the TTL alone decides). Any
    failure raises, before anything is deleted."""
    auth = config.report.auth.auth
    if auth is None:
        return {}
    from pipe.bitbucket.api import BitbucketApi
    from pipe.bitbucket.pull_requests import read_states

    api = BitbucketApi.direct(config.report.api_url, auth)
    return await in_background(read_states, api, config.build, ids, auth.source)


def decide(name: str, deployment: Any, pr: str, state: str | None, ttl_days: int | None, now: datetime) -> Decision:
    updated = deployment.updated or deployment.created
    age = (now - updated).total_seconds() / 86400 if updated else None
    stale = ttl_days is not None and age is not None and age >= ttl_days
    if state is not None and state != "OPEN":
        return Decision(name, deployment, pr, True, f"pull request #{pr} is {state.lower()}")
    if stale:
        return Decision(name, deployment, pr, True, f"not updated for {age:.0f} days (PREVIEW_TTL_DAYS={ttl_days})")
    why = f"pull request #{pr} is open" if state else f"updated {_ago(age)} (PREVIEW_TTL_DAYS={ttl_days})"
    return Decision(name, deployment, pr, False, why)


async def remove(api: PrefectApi, decision: Decision) -> str:
    """Cancel the preview's runs still going, give them a moment to end, delete the preview. A preview
    updated since it was listed (a new commit's step deploying it now) is kept, and so is one whose runs
    are still cancelling: its worker needs the deployment to stop their infrastructure."""
    current = await deployments.find_deployment_by_id(api, decision.deployment.id)
    if current is None:
        return "deleted (already gone)"
    if current.updated and decision.deployment.updated and current.updated > decision.deployment.updated:
        decision.why = "updated while the clean-up ran"
        return "kept"
    runs = await deployments.unfinished_flow_runs(api, decision.deployment.id)
    asked = []
    for run in runs:
        state = run.state.type.value if run.state else "UNKNOWN"
        if state == "CANCELLING":
            asked.append(run)
            continue
        answer = await api.cancel(run.id, at_once=state == "SCHEDULED")  # nothing runs a scheduled run yet
        console.info(
            f"Cancelling flow run {one_line(run.name)} of preview {one_line(decision.name)} before deleting it "
            f"(it was {state}; the server answered {answer})"
        )
        if answer not in FINAL_STATES:
            asked.append(run)
    still = await _wait_for_end(api, [run.id for run in asked])
    if still:
        decision.why += f"; {still} run(s) still cancelling after {CANCEL_WAIT_SECONDS:.0f} s: re-run the clean-up"
        return "kept, runs cancelling"
    await deployments.delete_deployment(api, decision.deployment.id)
    return f"deleted, {len(runs)} run(s) cancelled" if runs else "deleted"


async def _wait_for_end(api: PrefectApi, ids: list[Any]) -> int:
    """Wait up to CANCEL_WAIT_SECONDS for these runs to end; how many had not."""
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while ids:
        runs = await api.read_flow_runs(ids)
        ids = [run.id for run in runs if not (run.state and run.state.type.value in FINAL_STATES)]
        if not ids or time.monotonic() >= deadline:
            break
        await asyncio.sleep(1.0)
    return len(ids)


def show(decisions: list[Decision]) -> None:
    rows = [
        [one_line(d.name), f"#{d.pr}", d.done, d.why]
        for d in sorted(decisions, key=lambda d: (not d.delete, int(d.pr), d.name))
    ]
    presentation.grid(["Preview deployment", "PR", "Action", "Why"], rows)


def _ago(days: float | None) -> str:
    if days is None:
        return "at an unknown time"
    if days < 1:
        return f"{days * 24:.0f} h ago"
    return f"{days:.0f} days ago"
