"""What a flow run was and how it ended: the facts every reporter (console summary, outputs,
Bitbucket statuses and reports) is built from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


@dataclass
class RunInfo:
    """A flow run as created (or found through its idempotency key)."""

    deployment_name: str  # flow-name/deployment-name
    deployment_id: str
    flow_run_id: str
    flow_run_name: str
    flow_run_url: str
    deployment_version: str | None = None
    created: datetime | None = None
    deployment_url: str | None = None


@dataclass
class RunResult:
    """How the wait ended. ``state_type`` is a Prefect StateType value (COMPLETED, FAILED, ...)."""

    run: RunInfo
    state_type: str
    state_name: str
    state_message: str | None = None
    duration_seconds: float | None = None
    failing_task: str | None = None
    timed_out: bool = False
    stopped: bool = False  # the step was stopped (SIGTERM/SIGINT)
    cancel_requested: bool = False
    # Why a run went nowhere, when the waiter could tell: no worker took it, or it crashed in its pull steps.
    never_started: bool = False
    crashed_before_flow: bool = False
    work_pool: str | None = None
    work_queue: str | None = None
    live_workers: int | None = None
    last_step: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.state_type == "COMPLETED" and not self.timed_out and not self.stopped

    @property
    def final(self) -> bool:
        return self.state_type in FINAL_STATES
