"""What a flow run was and how it ended: the facts every reporter (console summary, outputs,
Bitbucket statuses and reports) is built from."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

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


@dataclass(kw_only=True)
class Stall:
    """Why a run went nowhere, when the waiter could tell. ``never_started``: it was not final and never
    left Scheduled/Pending (no worker took it), with ``live_workers`` of its pool (None: unknown).
    ``crashed_before_flow``: it crashed before its flow began (in a pull step, ``last_step``, or loading
    the flow): the cause is in the worker's log."""

    never_started: bool = False
    crashed_before_flow: bool = False
    work_pool: str | None = None
    work_queue: str | None = None
    live_workers: int | None = None
    last_step: str | None = None

    def stall(self) -> dict[str, Any]:
        """These fields alone, to hand on (``dataclasses.replace(result, **outcome.stall())``)."""
        return {item.name: getattr(self, item.name) for item in fields(Stall)}


@dataclass
class RunResult(Stall):
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

    @property
    def succeeded(self) -> bool:
        return self.state_type == "COMPLETED" and not self.timed_out and not self.stopped

    @property
    def final(self) -> bool:
        return self.state_type in FINAL_STATES
