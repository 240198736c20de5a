"""What the waiter knows of each run's state, from the events stream and from reads.

A run is final when a read says so; an event saying so only asks for that read. Events can come
late or twice (a replay after a reconnect, an event overtaken by a read): only a newer state counts.
A run that ended can start again (a retry from the UI, an automation): it is then followed anew.

States are told in the order they happened among the run's log lines (see :mod:`pipe.waiter.timeline`);
a final state is told after the run's last lines, once they have come (the waiter says when).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pipe.errors import PrefectError
from pipe.outcome import FINAL_STATES
from pipe.prefect_api import PrefectApi
from pipe.waiter.logs import Gap, LogPrinter
from pipe.waiter.progress import Progress
from pipe.waiter.streams import flow_run_resource
from pipe.waiter.timeline import Timeline

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

# A final state that happened longer ago than this (a run followed again through its idempotency
# key) is told at once: its lines were shipped long since. Longer than the slowest state poll (30 s).
FINAL_HOLD_MAX = timedelta(minutes=2)
NOT_STARTED = ("SCHEDULED", "PENDING")  # Scheduled, Late, AwaitingRetry; Pending


@dataclass
class FollowedRun:
    """What the waiter knows of one flow run."""

    id: UUID
    logs: LogPrinter
    flow_run: FlowRun | None = None  # as last read
    gap: Gap | None = field(default_factory=lambda: Gap(after=None))  # nothing covered before the stream
    final_by_event: bool = False  # the events stream says final; a read confirms it
    final_since: float | None = None  # time.monotonic() when a final state was first known
    current_type: str | None = None
    state_name: str | None = None
    state_time: datetime | None = None  # of the newest state reported (events can replay older ones)
    ran: bool = False  # reached Running at some point: a worker took it and its flow began
    backfilled: bool = False  # read by request after its end, from BACKFILL_WINDOW before it
    final_notice: tuple[datetime | None, str, str] | None = None  # a final state held: when, name, elapsed

    @property
    def read_type(self) -> str | None:
        """The state type as last read."""
        flow_run = self.flow_run
        return flow_run.state.type.value if flow_run is not None and flow_run.state is not None else None

    @property
    def final(self) -> bool:
        return self.read_type in FINAL_STATES

    @property
    def started(self) -> bool:
        return self.current_type not in (None, "SCHEDULED")


class States:
    """Follows each run's state: reads, events, and what the user is told of them."""

    def __init__(
        self, api: PrefectApi, runs: Mapping[UUID, FollowedRun], progress: Progress, timeline: Timeline | None = None
    ) -> None:
        self.api = api
        self.runs = runs
        self.progress = progress
        self.timeline = timeline
        self._by_resource = {flow_run_resource(id_): run for id_, run in runs.items()}

    async def read(self, runs: list[FollowedRun]) -> None:
        """Read the states of ``runs`` (one request for all)."""
        flow_runs = {flow_run.id: flow_run for flow_run in await self.api.read_flow_runs([run.id for run in runs])}
        for run in runs:
            flow_run = flow_runs.get(run.id)
            if flow_run is None:
                raise PrefectError(
                    f"flow run {run.id} is no longer on the Prefect API at {self.api.host}",
                    "someone deleted it while the step waited; re-run the step to start a new one",
                )
            run.flow_run = flow_run
            run.ran |= bool(flow_run.run_count)  # start_time is set for runs that crash in Pending too
            if flow_run.state is not None:
                state = flow_run.state
                self.report(run, state.type.value, state.name or state.type.value, state.timestamp)
            if run.final and run.final_since is None:
                run.final_since = time.monotonic()

    def on_event(self, event: Any) -> bool:
        """One event of the events stream; True when it told of a newer state of a run still waiting."""
        type_ = event.resource.get("prefect.state-type")
        run = self._by_resource.get(event.resource.id)
        if not type_ or run is None or run.final:
            return False
        if not self.report(run, type_, event.resource.get("prefect.state-name") or type_, event.occurred):
            return False
        run.final_by_event = type_ in FINAL_STATES
        if run.final_by_event and run.final_since is None:
            run.final_since = time.monotonic()
        return True

    def report(self, run: FollowedRun, type_: str, name: str, when: datetime | None) -> bool:
        """Take a state of ``run`` as known (announcing a new name); False for one older than the last."""
        if when is not None and run.state_time is not None and when < run.state_time:
            return False  # an older state replayed after a reconnect, or an event overtaken by a read
        if when is not None:
            run.state_time = when
        run.current_type = type_
        run.ran |= type_ == "RUNNING"
        if type_ not in FINAL_STATES and (run.final_by_event or run.final_since is not None):
            # It ended and started again (a retry from the UI, an automation): follow the new ending.
            self.tell_final(run)
            run.final_by_event, run.final_since, run.logs.finished_line_seen = False, None, False
            run.backfilled = False
        if name != run.state_name:
            run.state_name = name
            self._tell(run, type_, name, when)
        return True

    def _tell(self, run: FollowedRun, type_: str, name: str, when: datetime | None) -> None:
        elapsed = self.progress.elapsed()
        if self.timeline is None:
            self.progress.state(run.id, name, elapsed)
        elif type_ in FINAL_STATES and (when is None or when > datetime.now(UTC) - FINAL_HOLD_MAX):
            run.final_notice = (when, name, elapsed)  # told after the run's last lines
        else:
            self.timeline.add(when, lambda: self.progress.state(run.id, name, elapsed))

    def tell_final(self, run: FollowedRun) -> None:
        """Tell the run's final state, after every line held so far."""
        if run.final_notice is None:
            return
        _, name, elapsed = run.final_notice
        run.final_notice = None
        if self.timeline is not None:
            self.timeline.flush()
        self.progress.state(run.id, name, elapsed)
