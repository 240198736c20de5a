"""Wait: follow the step's flow runs to their final states, streaming their logs.

One events websocket and one logs websocket serve every run of the step, so a waiting pipe sends
almost no HTTP requests and notices each end at once; the reads it still makes (the states at the
start and at the end, logs a stream missed) cover all runs in one request. When a websocket cannot
be had (a proxy that blocks them, a server without them) the waiter falls back to polling with a
growing interval. Log lines are de-duplicated by id.

A run's last lines reach the server after its final state: the flow process ships them as it exits,
right after the engine's closing "Finished in state ..." line. The waiter waits for that line
(bounded) and then reads by request only what no stream was sure to deliver.

Connections drop. The waiter reconnects each stream itself (bounded, with backoff) so it knows when
a stream was down: while the events stream is down it polls the states, and every stretch the logs
stream missed is read back by request (the logs stream is live only), so no line is lost or printed
twice across reconnects. Every read is bounded by the deadline: once it passes, a read still in
flight gets ``DEADLINE_GRACE`` seconds before the waiter reports the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pipe import console
from pipe.errors import PipeError, PrefectError
from pipe.prefect_api import LOGS_PAGE, PrefectApi

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, Log

T = TypeVar("T")

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
POLL_START, POLL_MAX, POLL_GROWTH = 2.0, 30.0, 1.6
# With a live events stream, still read the states now and then in case an event was lost.
SAFETY_READ_START, SAFETY_READ_MAX = 60.0, 300.0
# The engine's own last line. Completed and failed runs log it; wait for it at most LINGER_MAX. After
# a completed run's closing line nothing follows: a short quiet spell lets the lines shipped with it
# land (milliseconds). A failed run's engine logs once more ("Engine execution exited ..."), which
# can go in the next shipment, a round trip later: a longer spell. Runs that end without the line
# (crashed, cancelled) get a longer spell too, at most LINGER_NO_CLOSE_MAX.
FINISHED_PREFIX = "Finished in state"
LINGER_MAX, LINGER_QUIET, LINGER_FAILED_QUIET = 3.0, 0.15, 0.5
LINGER_NO_CLOSE_QUIET, LINGER_NO_CLOSE_MAX = 0.5, 1.5
LINGER_POLL = 0.5  # reading logs by request while lingering (no live logs stream)
# The last read of a run's logs covers this much before its end (the flow ships lines every ~2 s).
BACKFILL_WINDOW = timedelta(seconds=30)
# Reading back what a stream missed starts this far before the last line it delivered.
GAP_MARGIN = timedelta(seconds=10)
# The last lines (after the final states) may take this long in all, reads included.
FINAL_LOGS_BUDGET = 20.0
# A read in flight when the deadline passes gets this long to finish.
DEADLINE_GRACE = 5.0
# Streams: how long one connect may take, how often to retry in a row, and the pauses between.
STREAM_CONNECT_TIMEOUT = 15.0
STREAM_RETRIES = 8
STREAM_BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
STREAM_MIN_UP = 1.0  # a stream that closes sooner than this after connecting counts as a failed connect
# A websocket's polite close waits 10 s for a silent server's answer: give it this long, then cut it.
STREAM_CLOSE_GRACE = 1.0
MAX_LOG_PAGES = 500  # 100,000 lines in one read
# Runs whose reads start within this span of each other share one read (from the earliest start).
READ_GROUP_SPAN = timedelta(seconds=30)
PROGRESS_EVERY = 300.0


def state_type(run: FlowRun | None) -> str | None:
    return run.state.type.value if run is not None and run.state is not None else None


class _DeadlinePassed(Exception):
    """A read was still in flight DEADLINE_GRACE seconds after the deadline."""


@dataclass
class LogPrinter:
    """Prints each log line of one run once, whichever path it came by."""

    prefix: str = ""
    enabled: bool = True
    seen: set[UUID] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    latest_timestamp: datetime | None = None
    finished_line_seen: bool = False

    def __call__(self, log: Log) -> None:
        if log.id is None or log.id in self.seen:
            return
        self.seen.add(log.id)
        self.last_seen = time.monotonic()
        if self.latest_timestamp is None or log.timestamp > self.latest_timestamp:
            self.latest_timestamp = log.timestamp
        if log.message.startswith(FINISHED_PREFIX) and getattr(log, "task_run_id", None) is None:
            self.finished_line_seen = True  # the flow run's own closing line, not a task run's
        if self.enabled:
            console.remote(log.timestamp, log.level, log.message, self.prefix)


@dataclass
class _Gap:
    """A stretch the logs stream did not cover: read back everything after ``after`` (None: all)."""

    after: datetime | None


@dataclass
class _Run:
    """What the waiter knows of one flow run."""

    id: UUID
    logs: LogPrinter
    flow_run: FlowRun | None = None  # as last read
    gap: _Gap | None = field(default_factory=lambda: _Gap(after=None))  # nothing covered before the stream
    final_by_event: bool = False  # the events stream says final; a read confirms it
    final_since: float | None = None  # time.monotonic() when a final state was first known
    current_type: str | None = None
    state_name: str | None = None
    state_time: datetime | None = None  # of the newest state reported (events can replay older ones)

    @property
    def final(self) -> bool:
        return state_type(self.flow_run) in FINAL

    @property
    def started(self) -> bool:
        return self.current_type not in (None, "SCHEDULED")


@dataclass
class WaitOutcome:
    flow_run: FlowRun
    timed_out: bool = False


class Waiter:
    def __init__(
        self,
        api: PrefectApi,
        flow_run_ids: Sequence[UUID],
        deadline: float,
        stream_logs: bool = True,
        prefixes: Mapping[UUID, str] | None = None,
    ) -> None:
        self.api = api
        self.deadline = deadline  # time.monotonic() value
        self.stream_logs = stream_logs
        self.runs = {
            id_: _Run(id_, LogPrinter(prefix=(prefixes or {}).get(id_, ""), enabled=stream_logs))
            for id_ in flow_run_ids
        }
        self.started = time.monotonic()
        self._changed = asyncio.Event()
        self._events_alive = False
        self._read_now = False  # the events stream (re)connected or dropped: read the states once
        self._logs_alive = False
        self._logs_streamed = False  # a line arrived through the logs websocket: the server streams them

    # -- the loop ------------------------------------------------------------------------------

    async def wait(self) -> dict[UUID, WaitOutcome]:
        tasks = [asyncio.create_task(self._follow_events(), name="events")]
        if self.stream_logs:
            tasks.append(asyncio.create_task(self._follow_logs(), name="logs"))
        try:
            await self._connected(tasks)
            # The first events may predate the subscription. Without this read there is no run to
            # report, so a deadline passing here is an error, not a timeout.
            self._read_now = False  # this read is the one a (re)connect asks for
            await self._bounded(self._read_states(list(self.runs.values())), "reading the flow runs")
            state_every, logs_every = self._state_interval(), POLL_START
            next_state = time.monotonic() + state_every
            next_logs = time.monotonic() + logs_every
            last_progress = time.monotonic()
            events_alive = self._events_alive
            while waiting := [run for run in self.runs.values() if not run.final]:
                now = time.monotonic()
                if now >= self.deadline:
                    return await self._at_deadline()
                if self._events_alive != events_alive or self._read_now:
                    # The events stream came or went: read once now and set the pace anew.
                    events_alive, self._read_now = self._events_alive, False
                    state_every = self._state_interval()
                    next_state = now
                wake = min(next_state, self.deadline)
                if self._polling_logs():
                    wake = min(wake, next_logs)
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, wake - now))
                    self._changed.clear()
                    if all(run.final_by_event for run in waiting):
                        next_state = 0.0  # confirm the final states with one read
                except TimeoutError:
                    pass
                now = time.monotonic()
                if self._polling_logs() and now >= next_logs:
                    await self._bounded(self._poll_logs(), "reading the flow runs' logs")
                    logs_every = min(logs_every * POLL_GROWTH, POLL_MAX)
                    next_logs = now + logs_every
                if now >= next_state:
                    await self._bounded(self._read_states(waiting), "reading the flow runs")
                    state_every = self._state_interval(state_every)
                    next_state = time.monotonic() + state_every
                    if any(run.final_by_event and not run.final for run in waiting):
                        next_state = time.monotonic() + POLL_START  # the read lagged the event: soon again
                if now - last_progress >= PROGRESS_EVERY:
                    last_progress = now
                    self._progress(waiting)
            await self._collect_last_lines(list(self.runs.values()))
            return self._outcomes()
        except _DeadlinePassed:
            if any(run.flow_run is None for run in self.runs.values()):
                raise PrefectError(
                    f"the Prefect API at {self.api.host} did not answer before TIMEOUT passed while reading the flow run",
                    "check that the server is up and reachable from the build, then re-run the step",
                ) from None
            return self._outcomes()
        finally:
            await _stop(tasks)

    async def _at_deadline(self) -> dict[UUID, WaitOutcome]:
        """One last read of the runs still waiting (an event may have been lost), then the last lines
        of those that did end, all within DEADLINE_GRACE; the rest timed out."""
        with contextlib.suppress(_DeadlinePassed):
            await self._bounded(
                self._read_states([r for r in self.runs.values() if not r.final]), "reading the flow runs"
            )
        grace = self.deadline + DEADLINE_GRACE - time.monotonic()
        await self._collect_last_lines([run for run in self.runs.values() if run.final], budget=grace)
        return self._outcomes()

    def _outcomes(self) -> dict[UUID, WaitOutcome]:
        outcomes = {}
        for run in self.runs.values():
            assert run.flow_run is not None  # read at the start
            outcomes[run.id] = WaitOutcome(run.flow_run, timed_out=not run.final)
        return outcomes

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
        if self._events_alive:
            return SAFETY_READ_START if previous is None else min(max(previous, SAFETY_READ_START) * 2, SAFETY_READ_MAX)
        return POLL_START if previous is None else min(previous * POLL_GROWTH, POLL_MAX)

    def _polling_logs(self) -> bool:
        """Read logs by request unless a live stream has proven that it delivers them (a server may
        not stream logs at all: self-hosted servers need PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED)."""
        if not self.stream_logs or not any(run.started for run in self.runs.values()):
            return False
        return not self._logs_live()

    def _logs_live(self) -> bool:
        return self._logs_alive and self._logs_streamed

    async def _connected(self, tasks: list[asyncio.Task[None]]) -> None:
        """Give the websockets a moment to subscribe before the first read (bounded)."""
        end = min(time.monotonic() + 5.0, self.deadline)
        while time.monotonic() < end and not all(t.done() for t in tasks):
            if self._events_alive and (self._logs_alive or not self.stream_logs):
                return
            await asyncio.sleep(0.02)

    async def _read_states(self, runs: list[_Run]) -> None:
        flow_runs = {flow_run.id: flow_run for flow_run in await self.api.read_flow_runs([run.id for run in runs])}
        for run in runs:
            flow_run = flow_runs.get(run.id)
            if flow_run is None:
                raise PrefectError(
                    f"flow run {run.id} is no longer on the Prefect API at {self.api.host}",
                    "someone deleted it while the step waited; re-run the step to start a new one",
                )
            run.flow_run = flow_run
            if flow_run.state is not None:
                state = flow_run.state
                self._report_state(run, state.type.value, state.name or state.type.value, state.timestamp)
            if run.final and run.final_since is None:
                run.final_since = time.monotonic()

    def _report_state(self, run: _Run, type_: str, name: str, when: datetime | None) -> bool:
        if when is not None and run.state_time is not None and when < run.state_time:
            return False  # an older state replayed after a reconnect, or an event overtaken by a read
        if when is not None:
            run.state_time = when
        run.current_type = type_
        if type_ not in FINAL and (run.final_by_event or run.final_since is not None):
            # It ended and started again (a retry from the UI, an automation): follow the new ending.
            run.final_by_event, run.final_since, run.logs.finished_line_seen = False, None, False
        if name != run.state_name:
            run.state_name = name
            prefix = f"{run.logs.prefix} " if run.logs.prefix else ""
            console.info(f"{prefix}Flow run is {name} ({self._elapsed()})")
        return True

    def _progress(self, waiting: list[_Run]) -> None:
        if len(self.runs) == 1:
            console.info(f"Still {waiting[0].state_name or 'waiting'} after {self._elapsed()}")
            return
        states = ", ".join(f"{run.logs.prefix.strip('[]')} {run.state_name or 'waiting'}" for run in waiting)
        console.info(f"Still waiting after {self._elapsed()} for {len(waiting)} flow runs: {states}")

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

    # -- websockets ------------------------------------------------------------------------------

    async def _stream(
        self,
        name: str,
        subscribe: Callable[[], AbstractAsyncContextManager[AsyncIterator[Any]]],
        on_up: Callable[[], Awaitable[None]],
        on_item: Callable[[Any], None],
        on_down: Callable[[], None],
    ) -> None:
        """Keep one stream connected: reconnect after a drop, give up after STREAM_RETRIES failed
        connects in a row (the waiter polls meanwhile and from then on). Prefect's own reconnects
        are off, so every drop is seen here."""
        failures = 0
        while failures <= STREAM_RETRIES and time.monotonic() < self.deadline:
            up_since: float | None = None
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(STREAM_CONNECT_TIMEOUT):
                        stream = await stack.enter_async_context(subscribe())
                    up_since = time.monotonic()
                    await on_up()
                    async for item in stream:
                        on_item(item)
                console.debug(f"The {name} stream was closed by the server; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                console.debug(f"The {name} stream dropped ({type(exc).__name__}: {exc}); reconnecting")
            finally:
                if up_since is not None:
                    on_down()
            lasted = time.monotonic() - up_since if up_since is not None else 0.0
            failures = 0 if lasted >= STREAM_MIN_UP else failures + 1
            if failures:
                await asyncio.sleep(STREAM_BACKOFF[min(failures, len(STREAM_BACKOFF)) - 1])
        console.debug(f"The {name} stream is unavailable; polling instead")

    async def _follow_events(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        resources = {f"prefect.flow-run.{id_}": run for id_, run in self.runs.items()}

        def subscribe() -> Any:
            event_filter = EventFilter(
                event=EventNameFilter(prefix=["prefect.flow-run."]),
                any_resource=EventAnyResourceFilter(id=list(resources)),
            )
            return get_events_subscriber(filter=event_filter, reconnection_attempts=0)

        async def on_up() -> None:
            self._events_alive = True
            self._read_now = True  # events of the time it was down may be gone: read the states
            self._changed.set()

        def on_item(event: Any) -> None:
            type_ = event.resource.get("prefect.state-type")
            run = resources.get(event.resource.id)
            if not type_ or run is None or run.final:
                return
            if self._report_state(run, type_, event.resource.get("prefect.state-name") or type_, event.occurred):
                run.final_by_event = type_ in FINAL
                if run.final_by_event and run.final_since is None:
                    run.final_since = time.monotonic()
                self._changed.set()

        def on_down() -> None:
            self._events_alive = False
            self._changed.set()

        await self._stream("events", subscribe, on_up, on_item, on_down)

    async def _follow_logs(self) -> None:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.logging.clients import get_logs_subscriber

        def subscribe() -> Any:
            log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(self.runs)))
            return get_logs_subscriber(filter=log_filter, reconnection_attempts=0)

        async def on_up() -> None:
            self._logs_alive = True
            missed = [run for run in self.runs.values() if run.gap is not None]
            if not missed:
                return
            try:  # what the stream missed (subscribed first, so nothing falls between)
                await self._read_logs_from([(run, run.gap.after if run.gap else None) for run in missed])
            except PipeError as exc:  # the gaps stay open: the next poll or the last read covers them
                console.debug(f"Could not read back the logs the stream missed: {exc}")

        def on_item(log: Any) -> None:
            run = self.runs.get(log.flow_run_id)
            if run is not None:
                self._logs_streamed = True
                run.logs(log)

        def on_down() -> None:
            self._logs_alive = False
            for run in self.runs.values():
                latest = run.logs.latest_timestamp
                after = latest - GAP_MARGIN if latest is not None else None
                if run.gap is not None and (run.gap.after is None or (after is not None and run.gap.after < after)):
                    after = run.gap.after  # an earlier stretch is still open
                run.gap = _Gap(after)  # a new object: a read that began before this drop does not close it
            self._changed.set()

        await self._stream("logs", subscribe, on_up, on_item, on_down)

    # -- logs by request ---------------------------------------------------------------------------

    async def _collect_last_lines(self, runs: list[_Run], budget: float = FINAL_LOGS_BUDGET) -> None:
        """Wait (bounded) for each run's closing lines, then read the last stretch of every run whose
        lines a live stream did not surely deliver (a gap, no stream, or no closing line). The outcome
        is known by now: a read that fails costs lines (said so), not the result."""
        if not self.stream_logs or not runs or budget <= 0:
            return
        try:
            async with asyncio.timeout(budget):
                await self._linger(runs)
                live = self._logs_live()
                unsure = [run for run in runs if not (live and run.gap is None and run.logs.finished_line_seen)]
                await self._read_logs_from([(run, _backfill_after(run)) for run in unsure])
        except (TimeoutError, PipeError) as exc:
            detail = str(exc) or f"no answer within {budget:.0f}s"
            console.warning(f"The last log lines of the run could not be read ({detail}); see the run in Prefect")

    async def _linger(self, runs: list[_Run]) -> None:
        while open_runs := [run for run in runs if not _settled(run, time.monotonic())]:
            if self._logs_live():
                await asyncio.sleep(0.02)
            else:
                await self._read_logs_from([(run, self._poll_after(run)) for run in open_runs])
                await asyncio.sleep(LINGER_POLL)

    async def _poll_logs(self) -> None:
        now = time.monotonic()
        runs = [run for run in self.runs.values() if run.started and not (run.final and _settled(run, now))]
        await self._read_logs_from([(run, self._poll_after(run)) for run in runs])

    def _poll_after(self, run: _Run) -> datetime | None:
        if run.gap is not None:
            return run.gap.after  # first what no stream covered
        latest = run.logs.latest_timestamp
        return latest - timedelta(seconds=5) if latest else None

    async def _read_logs_from(self, starts: list[tuple[_Run, datetime | None]]) -> None:
        """Read each run's lines after its own start in as few requests as overlap allows: runs read
        from the beginning together (they have few lines, or none yet), the others in groups whose
        starts lie within READ_GROUP_SPAN of each other, each from its earliest start."""
        for after, runs in _groups(starts):
            await self._read_logs(runs, after)

    async def _read_logs(self, runs: list[_Run], after: datetime | None) -> None:
        """Read (paged) every line of ``runs`` after ``after``. A complete read that covers a run's
        open gap closes it only if the logs stream was subscribed when the read began: lines that
        reach the server after a read made while the stream is down are in neither, so such a read
        only moves the gap's start up to what it has seen."""
        gaps, stream_up = {run.id: run.gap for run in runs}, self._logs_alive
        offset, complete = 0, False
        for _ in range(MAX_LOG_PAGES):
            page: list[Any] = await self.api.read_logs(list(gaps), after=after, offset=offset)
            for log in page:
                if (run := self.runs.get(log.flow_run_id)) is not None:
                    run.logs(log)
            if len(page) < LOGS_PAGE:
                complete = True
                break
            offset += len(page)
        for run in runs:
            gap = gaps[run.id]
            if gap is None or run.gap is not gap:
                continue  # no gap, or another stretch opened meanwhile: that one stays open
            if after is not None and (gap.after is None or after > gap.after):
                continue  # began after the gap's start: does not cover it
            latest = run.logs.latest_timestamp
            if stream_up and complete:
                run.gap = None
            elif latest is not None and (gap.after is None or latest - GAP_MARGIN > gap.after):
                run.gap = _Gap(latest - GAP_MARGIN)


def _settled(run: _Run, now: float) -> bool:
    """A final run's logs are complete: its closing line has come and a quiet spell has passed since
    the last line (lines logged with or after it can come in the same or the next shipment), or a
    quiet spell for runs that end without one; each bounded."""
    if run.final_since is None:
        return False
    waited = now - run.final_since
    type_ = state_type(run.flow_run)
    if type_ in ("COMPLETED", "FAILED"):
        spell = LINGER_QUIET if type_ == "COMPLETED" else LINGER_FAILED_QUIET
        quiet = run.logs.finished_line_seen and now - run.logs.last_seen >= spell
        return quiet or waited >= LINGER_MAX
    return now - max(run.logs.last_seen, run.final_since) >= LINGER_NO_CLOSE_QUIET or waited >= LINGER_NO_CLOSE_MAX


def _backfill_after(run: _Run) -> datetime | None:
    """From BACKFILL_WINDOW before the end, or from the start of a stretch no stream covered."""
    if run.gap is not None and run.gap.after is None:
        return None
    flow_run = run.flow_run
    if flow_run is None:
        return None
    end = flow_run.end_time or (flow_run.state.timestamp if flow_run.state else None)
    if end is None:
        return None
    after = end - BACKFILL_WINDOW
    if run.gap is not None and run.gap.after is not None:
        after = min(after, run.gap.after)
    return after if flow_run.start_time is None or after > flow_run.start_time else None


def _groups(starts: list[tuple[_Run, datetime | None]]) -> list[tuple[datetime | None, list[_Run]]]:
    """``starts`` grouped for reading: those from the beginning, then by READ_GROUP_SPAN."""
    from_start = [run for run, after in starts if after is None]
    groups: list[tuple[datetime | None, list[_Run]]] = [(None, from_start)] if from_start else []
    dated = sorted(((after, run) for run, after in starts if after is not None), key=lambda pair: pair[0])
    for after, run in dated:
        group_start = groups[-1][0] if groups else None
        if group_start is not None and after - group_start <= READ_GROUP_SPAN:
            groups[-1][1].append(run)
        else:
            groups.append((after, [run]))
    return groups


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the stream tasks and wait for them, at most STREAM_CLOSE_GRACE a round: a second
    cancel cuts a websocket close that waits for a server that no longer answers."""
    for _ in range(3):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=STREAM_CLOSE_GRACE)
