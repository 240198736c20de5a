"""The loop: follows the step's runs until each is final or the deadline passes.

It sets the pace of the reads: with a live events stream the states are read only now and then
(insurance against a lost event), without one they are polled with a growing interval. Every read is
bounded by the deadline: once it passes, a read still in flight gets ``DEADLINE_GRACE`` seconds
before the waiter reports the timeout.

Only the states decide how the wait ends: logs are shown along the way, in the order things
happened, and a run's final state is told after its last lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pipe import console
from pipe.errors import PrefectError
from pipe.prefect_api import PrefectApi
from pipe.waiter.lines import TaskNames
from pipe.waiter.logs import LogPrinter, Logs, settled
from pipe.waiter.outcomes import WaitOutcome, outcomes
from pipe.waiter.progress import PROGRESS_EVERY, Progress
from pipe.waiter.states import FollowedRun, States
from pipe.waiter.streams import Notices, Stream, events_subscription, logs_subscription, stop
from pipe.waiter.timeline import Timeline

if TYPE_CHECKING:
    pass

T = TypeVar("T")

POLL_START, POLL_MAX, POLL_GROWTH = 2.0, 30.0, 1.6
# Logs read by request (no live logs stream): LOGS_POLL_START after a run began running, then twice
# as far apart each time up to POLL_MAX, so the reads grow with the logarithm of the run's length
# until they are 30 s apart (a 20-s run: reads at 3 and 9 s, where reads from its creation every 2 s
# growing by 1.6 took 6). A run that only waits for infrastructure (Pending) is read every POLL_MAX.
LOGS_POLL_START, LOGS_POLL_GROWTH = 3.0, 2.0
# With a live events stream, still read the states now and then in case an event was lost.
SAFETY_READ_START, SAFETY_READ_MAX = 60.0, 300.0
# A read in flight when the deadline passes gets this long to finish.
DEADLINE_GRACE = 5.0
CONNECT_WAIT = 5.0  # how long the first read waits for the websockets to subscribe
TELL_FINAL_EVERY = 0.1  # how often a run that ended is checked for its last lines having come


class _DeadlinePassed(Exception):
    """A read was still in flight DEADLINE_GRACE seconds after the deadline."""


class Waiter:
    """Follows flow runs to their final states on one events and one logs stream, streaming logs.

    ``labels`` name the runs in what is printed (deployment names such as ``etl/a``); with a single
    run, or none given, lines carry no name."""

    def __init__(
        self,
        api: PrefectApi,
        flow_run_ids: Sequence[UUID],
        deadline: float,
        stream_logs: bool = True,
        labels: Mapping[UUID, str] | None = None,
    ) -> None:
        self.api = api
        self.deadline = deadline  # time.monotonic() value
        self.stream_logs = stream_logs
        self.progress = Progress(flow_run_ids, labels or {})
        self.timeline = Timeline()
        self.task_names = TaskNames(api.task_run_names if api is not None else None)
        self.runs = {
            id_: FollowedRun(
                id_,
                LogPrinter(self.progress.tag(id_), stream_logs, self.timeline, self.task_names),
            )
            for id_ in flow_run_ids
        }
        notices = Notices()
        self.states = States(api, self.runs, self.progress, self.timeline)
        self.events = Stream("events", events_subscription(flow_run_ids), deadline, notices)
        logs_stream = Stream("logs", logs_subscription(flow_run_ids), deadline, notices)
        self.logs = Logs(api, self.runs, logs_stream, stream_logs, notices)
        self._changed = asyncio.Event()
        self._read_now = False  # the events stream (re)connected or dropped: read the states once

    async def wait(self) -> dict[UUID, WaitOutcome]:
        events = self.events.follow(self._events_up, self._on_event, self._changed.set)
        tasks = [asyncio.create_task(events, name="events")]
        if self.stream_logs:
            logs = self.logs.stream.follow(self.logs.on_up, self.logs.on_item, self._logs_down)
            tasks.append(asyncio.create_task(logs, name="logs"))
        streams = list(tasks)
        tasks.append(asyncio.create_task(self.timeline.run(self.task_names.resolve), name="timeline"))
        try:
            await self._connected(streams)
            # The first events may predate the subscription. Without this read there is no run to
            # report, so a deadline passing here is an error, not a timeout.
            self._read_now = False  # this read is the one a (re)connect asks for
            subscribed = self.logs.stream.connects if self.logs.stream.alive else None
            await self._bounded(self.states.read(list(self.runs.values())), "reading the flow runs")
            self._nothing_missed(subscribed)
            state_every, logs_every = self._state_interval(), LOGS_POLL_START
            next_state = time.monotonic() + state_every
            next_logs: float | None = None  # set once a run has started (it has no lines before)
            logs_clock_ran = False  # the logs' poll clock started from a run that runs
            last_progress = time.monotonic()
            events_alive = self.events.alive
            while waiting := [run for run in self.runs.values() if not run.final]:
                now = time.monotonic()
                if now >= self.deadline:
                    return await self._at_deadline()
                if self.events.alive != events_alive or self._read_now:
                    # The events stream came or went: read once now and set the pace anew.
                    events_alive, self._read_now = self.events.alive, False
                    state_every = self._state_interval()
                    next_state = now
                wake = min(next_state, self.deadline)
                if self.logs.polling():
                    ran = any(run.ran for run in self.runs.values())
                    if next_logs is None or (ran and not logs_clock_ran):
                        logs_every, logs_clock_ran = LOGS_POLL_START, ran
                        next_logs = now + (LOGS_POLL_START if ran else POLL_MAX)
                    wake = min(wake, next_logs)
                if any(run.final_notice for run in self.runs.values()):
                    wake = min(wake, now + TELL_FINAL_EVERY)
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, wake - now))
                    self._changed.clear()
                    if all(run.final_by_event for run in waiting):
                        next_state = 0.0  # confirm the final states with one read
                except TimeoutError:
                    pass
                now = time.monotonic()
                if self.logs.polling() and next_logs is not None and now >= next_logs:
                    await self._bounded(self.logs.poll(), "reading the flow runs' logs")
                    logs_every = min(logs_every * LOGS_POLL_GROWTH, POLL_MAX)
                    next_logs = now + logs_every
                if now >= next_state:
                    await self._bounded(self.states.read(waiting), "reading the flow runs")
                    state_every = self._state_interval(state_every)
                    next_state = time.monotonic() + state_every
                    if any(run.final_by_event and not run.final for run in waiting):
                        next_state = time.monotonic() + POLL_START  # the read lagged the event: soon again
                if now - last_progress >= PROGRESS_EVERY:
                    last_progress = now
                    self.progress.still_waiting({run.id: run.state_name for run in waiting})
                self._tell_settled()
            await self.logs.collect_last_lines(list(self.runs.values()))
            return await self._outcomes()
        except _DeadlinePassed:
            if any(run.flow_run is None for run in self.runs.values()):
                raise PrefectError(
                    f"the Prefect API at {self.api.host} did not answer before TIMEOUT passed while reading the flow run",
                    "check that the server is up and reachable from the build, then re-run the step",
                ) from None
            return await self._outcomes()
        finally:
            await stop(tasks)
            self.timeline.flush()

    async def _at_deadline(self) -> dict[UUID, WaitOutcome]:
        """One last read of the runs still waiting (an event may have been lost), then the last lines
        of those that did end, all within DEADLINE_GRACE; the rest timed out."""
        with contextlib.suppress(_DeadlinePassed):
            await self._bounded(
                self.states.read([r for r in self.runs.values() if not r.final]), "reading the flow runs"
            )
        grace = self.deadline + DEADLINE_GRACE - time.monotonic()
        await self.logs.collect_last_lines([run for run in self.runs.values() if run.final], budget=grace)
        return await self._outcomes()

    async def _outcomes(self) -> dict[UUID, WaitOutcome]:
        """How each run ended, its final state told after its last lines."""
        self.timeline.flush()
        for run in self.runs.values():
            self.states.tell_final(run)
        return await outcomes(self.api, list(self.runs.values()))

    def _tell_settled(self) -> None:
        """Tell the final state of each run whose last lines have come."""
        now = time.monotonic()
        for run in self.runs.values():
            if (
                run.final_notice is not None
                and run.final
                and (not self.stream_logs or settled(run, now, self.logs.covers(run)))
            ):
                self.states.tell_final(run)

    def _nothing_missed(self, subscribed: int | None) -> None:
        """A run that has never run has no lines yet: when the logs stream was subscribed before the
        first read found it so (``subscribed``: its connect count then) and has not dropped since,
        the stream carries all of them (no read back needed)."""
        stream = self.logs.stream
        if subscribed is None or not stream.alive or stream.connects != subscribed:
            return
        for run in self.runs.values():
            flow_run = run.flow_run
            never_ran = flow_run is not None and not flow_run.run_count and not run.ran
            if never_ran and run.current_type in (None, "SCHEDULED") and run.gap is not None and run.gap.after is None:
                run.gap = None

    async def _bounded(self, call: Awaitable[T], doing: str) -> T:
        """Await ``call``, giving up DEADLINE_GRACE seconds after the deadline."""
        remaining = self.deadline - time.monotonic() + DEADLINE_GRACE
        try:
            return await asyncio.wait_for(call, timeout=max(remaining, 0.1))
        except TimeoutError:
            console.debug(f"The deadline passed while {doing}")
            raise _DeadlinePassed from None

    def _state_interval(self, previous: float | None = None) -> float:
        """With a live events stream a read is only insurance; without one it is the poll."""
        if self.events.alive:
            return SAFETY_READ_START if previous is None else min(max(previous, SAFETY_READ_START) * 2, SAFETY_READ_MAX)
        return POLL_START if previous is None else min(previous * POLL_GROWTH, POLL_MAX)

    async def _connected(self, tasks: list[asyncio.Task[None]]) -> None:
        """Give the websockets a moment to subscribe before the first read (bounded)."""
        end = min(time.monotonic() + CONNECT_WAIT, self.deadline)
        while time.monotonic() < end and not all(t.done() for t in tasks):
            if self.events.alive and (self.logs.stream.alive or not self.stream_logs):
                return
            await asyncio.sleep(0.02)

    # -- what the streams tell -------------------------------------------------------------------

    async def _events_up(self) -> None:
        self._read_now = True  # events of the time it was down may be gone: read the states
        self._changed.set()

    def _on_event(self, event: Any) -> None:
        if self.states.on_event(event):
            self._changed.set()

    def _logs_down(self) -> None:
        self.logs.on_down()
        self._changed.set()
