"""What the build log shows of the runs: the summary box of one run, the table of several, and the
DRY_RUN view of what would be created."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pipe import console
from pipe.durations import format_duration
from pipe.outcome import RunResult
from pipe.remote_text import one_line

if TYPE_CHECKING:
    from pipe.config import Config
    from pipe.run import Plan

RULE = "─"


def identity(config: Config) -> None:
    """DRY_RUN's identity picture (the step token's claims, a ready trust condition), printed before any
    exchange is tried: a refused or unreachable exchange is when it is needed most."""
    from pipe import identity

    for line in identity.describe(config.identity):
        console.info(line)


def gateway_rule(config: Config, deployments: list[str]) -> None:
    """DRY_RUN behind the gateway: the policy rule this step needs on ``deployments`` (globs)."""
    from pipe.identity import gateway_rule

    for line in gateway_rule.lines(config, deployments):
        console.info(line)


def dry_run(plans: list[Plan]) -> None:
    for plan in plans:
        console.info(f"DRY_RUN: deployment {plan.label} ({plan.deployment.id}) resolved; nothing was created")
        body = json.dumps(plan.request.create_fields(), indent=2, sort_keys=True, default=str)
        console.plain(f"Would create a flow run of {plan.label} with:\n{body}")
    what = "the deployment exists" if len(plans) == 1 else f"all {len(plans)} deployments exist"
    console.success(f"Dry run passed: {what} and the parameters match")


def outcome(results: list[RunResult]) -> None:
    """The summary box for one run, the table for several."""
    if len(results) == 1:
        summary(results[0])
    else:
        table(results)


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
        ("Duration", duration(result.duration_seconds)),
        ("Link", run.flow_run_url),
    ]
    if not result.succeeded and result.state_message:
        rows.append(("Error", result.state_message))
    if result.failing_task:
        rows.append(("Failed task", result.failing_task))
    width = max(len(k) for k, _ in rows)
    rule = RULE * 60
    console.plain(rule)
    for key, value in rows:
        console.plain(f" {key:<{width}}  {one_line(value)}")  # names and messages are the server's text
    console.plain(rule)


def table(results: list[RunResult]) -> None:
    """One screen for many runs: a row each, then the errors."""
    rows = [
        [one_line(r.run.deployment_name), one_line(state_label(r)), duration(r.duration_seconds), r.run.flow_run_url]
        for r in results
    ]
    notes = []
    for r in results:
        if not r.succeeded and (r.state_message or r.failing_task):
            task = f" (task {r.failing_task})" if r.failing_task else ""
            notes.append(one_line(f" {r.run.deployment_name}{task}: {r.state_message or r.state_name}"))
    grid(["Deployment", "State", "Duration", "Link"], rows, notes)


def grid(header: list[str], rows: list[list[str]], notes: list[str] | None = None) -> None:
    """Columns padded to their widest cell (the last one left as it is), between two rules; ``notes``
    follow the rows. Cells are already one line each."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    rule = RULE * (sum(widths) + 2 * len(widths) + 2 + max(len(row[-1]) for row in table))
    console.plain(rule)
    for row in table:
        console.plain(
            " " + "  ".join([*(f"{cell:<{width}}" for cell, width in zip(row[:-1], widths, strict=True)), row[-1]])
        )
    for note in notes or []:
        console.plain(note)
    console.plain(rule)


def state_label(result: RunResult) -> str:
    if result.timed_out and result.never_started:
        return f"no worker took it, {result.state_name}"
    if result.crashed_before_flow:
        return f"crashed in pull step {result.last_step}" if result.last_step else "crashed before its flow started"
    if result.timed_out:
        return f"timed out after TIMEOUT, {result.state_name}"
    if result.stopped:
        return "step stopped"
    return result.state_name


def duration(seconds: float | None) -> str:
    return format_duration(seconds) or "-"


def stop_note(results: list[RunResult]) -> str:
    if all(r.cancel_requested for r in results):
        return "was cancelled" if len(results) == 1 else "were cancelled"
    return "may still be running"
