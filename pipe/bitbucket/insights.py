"""The Code Insights report: ``PUT /repositories/{ws}/{repo}/commit/{sha}/reports/{id}``.

``report_type`` is TEST: the flow run is a check the commit passed or failed (BUG and SECURITY are for
findings with annotations, COVERAGE for percentages). One report per deployment, PENDING while the run
goes, then PASSED or FAILED with at most ten data fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipe.bitbucket import fields
from pipe.bitbucket.verdict import Verdict
from pipe.build import Build
from pipe.outcome import RunInfo, RunResult
from pipe.secret import mask

if TYPE_CHECKING:
    from pipe.preview.publish import Preview

REPORT_TYPE = "TEST"
REPORTER = "prefect-trigger"
ID_PREFIX = "prefect"


def report_id(deployment_name: str) -> str:
    return fields.stable_id(ID_PREFIX, deployment_name, fields.REPORT_ID)


def path(build: Build, deployment_name: str) -> str:
    return f"{build.commit_path}/reports/{report_id(deployment_name)}"


def payload(run: RunInfo, verdict: Verdict, result: RunResult | None = None) -> dict[str, Any]:
    details = f"Flow run {run.flow_run_name} of deployment {run.deployment_name} {verdict.phrase}."
    if result is not None and verdict.failed and result.state_message:
        details = f"{details} {result.state_message}"
    body: dict[str, Any] = {
        "title": fields.clip(f"Prefect {run.deployment_name}", fields.REPORT_TITLE),
        "details": fields.clip(mask(details), fields.REPORT_DETAILS),
        "report_type": REPORT_TYPE,
        "reporter": REPORTER,
        "result": verdict.report_result,
        "data": data(run, verdict, result),
    }
    link = fields.http_url(run.flow_run_url, fields.REPORT_LINK)
    if link:
        body["link"] = link
    return body


def data(run: RunInfo, verdict: Verdict, result: RunResult | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    def text(title: str, value: str | None) -> None:
        if value and value.strip():
            items.append({"title": title, "type": "TEXT", "value": fields.clip(mask(value), fields.DATA_TEXT)})

    text("State", _state(result) if result else "Scheduled")
    if result is not None and result.duration_seconds is not None and result.duration_seconds >= 0:
        items.append({"title": "Duration", "type": "DURATION", "value": round(result.duration_seconds * 1000)})
    href = fields.http_url(run.flow_run_url, fields.REPORT_LINK)
    if href:
        label = fields.clip(run.flow_run_name or run.flow_run_id, fields.DATA_TEXT)
        items.append({"title": "Flow run", "type": "LINK", "value": {"text": label, "href": href}})
    deployment = fields.http_url(run.deployment_url, fields.REPORT_LINK) if run.deployment_url else None
    if deployment:
        label = fields.clip(run.deployment_name, fields.DATA_TEXT)
        items.append({"title": "Deployment", "type": "LINK", "value": {"text": label, "href": deployment}})
    else:
        text("Deployment", run.deployment_name)
    text("Deployment version", run.deployment_version)
    if run.created is not None:
        items.append({"title": "Created", "type": "DATE", "value": round(run.created.timestamp() * 1000)})
    if result is not None and not result.succeeded:
        text("Error", result.state_message)
        text("Failing task", result.failing_task)
    text("Flow run ID", run.flow_run_id)
    return items[: fields.DATA_FIELDS]


def _state(result: RunResult) -> str:
    state = result.state_name or result.state_type
    if result.timed_out:
        return f"{state} (pipe timed out)"
    if result.stopped:
        return f"{state} (step stopped)"
    return state


def preview_payload(build: Build, preview: Preview) -> dict[str, Any]:
    """A preview deployment (ACTION=preview without PREVIEW_RUN): deployed, linked, nothing run yet."""
    version = f" (version {preview.version})" if preview.version else ""
    details = (
        f"Preview deployment {preview.name}{version} of pull request #{build.pull_request_id} was deployed; "
        "run it from Prefect, or set PREVIEW_RUN: 'true' to run it in the step."
    )
    items: list[dict[str, Any]] = []
    link = fields.http_url(preview.url, fields.REPORT_LINK)
    if link:
        label = fields.clip(preview.name, fields.DATA_TEXT)
        items.append({"title": "Preview deployment", "type": "LINK", "value": {"text": label, "href": link}})
    for title, value in (
        ("Version", preview.version),
        ("Pull request", f"#{build.pull_request_id}"),
        ("Work pool", preview.work_pool),
        ("Deployment ID", preview.deployment_id),
    ):
        if value:
            items.append({"title": title, "type": "TEXT", "value": fields.clip(mask(value), fields.DATA_TEXT)})
    body: dict[str, Any] = {
        "title": fields.clip(f"Prefect {preview.name}", fields.REPORT_TITLE),
        "details": fields.clip(mask(details), fields.REPORT_DETAILS),
        "report_type": REPORT_TYPE,
        "reporter": REPORTER,
        "result": "PASSED",
        "data": items[: fields.DATA_FIELDS],
    }
    if link:
        body["link"] = link
    return body
