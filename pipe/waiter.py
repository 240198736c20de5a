"""Wait: follow a flow run to its final state, streaming its logs.

State changes come from Prefect's events websocket and log lines from its logs websocket, so a
waiting pipe sends almost no HTTP requests and notices the end at once. When a websocket cannot
be had (a proxy that blocks them, a server without them) the waiter falls back to polling with a
growing interval. Log lines are de-duplicated by id, and once the run is final one paged read of
the last stretch of logs picks up lines that reached the server after the final state.

Connections drop. The waiter reconnects each stream itself (bounded, with backoff) so it knows
when a stream was down: while the events stream is down it polls the run's state, and every stretch
the logs stream missed is read back by request (the logs stream is live only), so no line is lost
or printed twice across reconnects. Every read is bounded by the deadline: once it passes, a read
still in flight gets ``DEADLINE_GRACE`` seconds before the waiter reports the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
# With a live events stream, still read the run now and then in case an event was lost.
SAFETY_READ_START, SAFETY_READ_MAX = 60.0, 300.0
# After the final state the flow process still ships its last log batch (it flushes on exit).
# The engine's own last line is "Finished in state ..."; wait for it (bounded). Runs that end
# without it (crashed, cancelled) get a short quiet period instead.
FINISHED_PREFIX = "Finished in state"
LINGER_MAX, LINGER_QUIET, LINGER_QUIET_MAX = 3.0, 0.5, 1.5
# The final read of logs covers this much before the end (batches are ~2 s apart).
BACKFILL_WINDOW = timedelta(seconds=30)
# Reading back what a stream missed starts this far before the last line it delivered.
GAP_MARGIN = timedelta(seconds=10)
# The last lines (after the final state) may take this long in all, reads included.
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
PROGRESS_EVERY = 300.0


def state_type(run: FlowRun) -> str | None:
    return run.state.type.value if run.state is not None else None


class _DeadlinePassed(Exception):
    """A read was still in flight DEADLINE_GRACE seconds after the deadline."""


@dataclass
class LogPrinter:
    """Prints each log line once, whichever path it came by."""

    prefix: str = ""
    enabled: bool = True
    seen: set[UUID] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    latest_timestamp: datetime | None = None
    printed: int = 0
    finished_line_seen: bool = False
    streamed: bool = False  # at least one line arrived through the logs websocket

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
            self.printed += 1


@dataclass
class _Gap:
    """A stretch the logs stream did not cover: read back everything after ``after`` (None: all)."""

    after: datetime | None


@dataclass
class WaitOutcome:
    flow_run: FlowRun
    timed_out: bool = False
    used_websockets: bool = True


class Waiter:
    def __init__(
        self,
        api: PrefectApi,
        flow_run_id: UUID,
        deadline: float,
        stream_logs: bool = True,
        prefix: str = "",
        on_state: Callable[[str, str], None] | None = None,
    ) -> None:
        self.api = api
        self.flow_run_id = flow_run_id
        self.deadline = deadline  # time.monotonic() value
        self.logs = LogPrinter(prefix=prefix, enabled=stream_logs)
        self.stream_logs = stream_logs
        self.on_state = on_state or (lambda type_, name: None)
        self.started = time.monotonic()
        self._changed = asyncio.Event()
        self._event_state: str | None = None
        self._events_alive = False
        self._events_ever = False
        self._read_now = False  # the events stream (re)connected or dropped: read the state once
        self._logs_alive = False
        self._gap: _Gap | None = _Gap(after=None)  # before the first subscription nothing was covered
        self._last_state_name: str | None = None
        self._current_type: str | None = None
        self._state_time: datetime | None = None  # of the newest state reported (events can replay older ones)

    # -- the loop ------------------------------------------------------------------------------

    async def wait(self) -> WaitOutcome:
        tasks = [asyncio.create_task(self._follow_events(), name="events")]
        if self.stream_logs:
            tasks.append(asyncio.create_task(self._follow_logs(), name="logs"))
        run: FlowRun | None = None
        try:
            await self._connected(tasks)
            # The first event may predate the subscription. Without this read there is no run to
            # report, so a deadline passing here is an error, not a timeout.
            self._read_now = False  # this read is the one a (re)connect asks for
            run = await self._bounded(self.api.read_flow_run(self.flow_run_id), "reading the flow run")
            self._announce(run)
            state_every, logs_every = self._state_interval(), POLL_START
            next_state = time.monotonic() + state_every
            next_logs = time.monotonic() + logs_every
            last_progress = time.monotonic()
            events_alive = self._events_alive
            while state_type(run) not in FINAL:
                now = time.monotonic()
                if now >= self.deadline:
                    return WaitOutcome(run, timed_out=True, used_websockets=self._events_ever)
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
                    if self._event_state in FINAL:
                        next_state = 0.0  # confirm the final state with one read
                except TimeoutError:
                    pass
                now = time.monotonic()
                if self._polling_logs() and now >= next_logs:
                    await self._bounded(self._read_logs(self._poll_after()), "reading the flow run's logs")
                    logs_every = min(logs_every * POLL_GROWTH, POLL_MAX)
                    next_logs = now + logs_every
                if now >= next_state:
                    run = await self._bounded(self.api.read_flow_run(self.flow_run_id), "reading the flow run")
                    self._announce(run)
                    state_every = self._state_interval(state_every)
                    next_state = time.monotonic() + state_every
                if now - last_progress >= PROGRESS_EVERY:
                    last_progress = now
                    console.info(f"Still {self._last_state_name or 'waiting'} after {self._elapsed()}")
            if self.stream_logs:
                await self._collect_last_lines(run)
            return WaitOutcome(run, used_websockets=self._events_ever)
        except _DeadlinePassed:
            if run is None:
                raise PrefectError(
                    f"the Prefect API at {self.api.host} did not answer before TIMEOUT passed while reading the flow run",
                    "check that the server is up and reachable from the build, then re-run the step",
                ) from None
            return WaitOutcome(run, timed_out=True, used_websockets=self._events_ever)
        finally:
            await _stop(tasks)

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
        if not self.stream_logs or self._current_type in (None, "SCHEDULED"):
            return False
        return not (self._logs_alive and self.logs.streamed)

    async def _connected(self, tasks: list[asyncio.Task[None]]) -> None:
        """Give the websockets a moment to subscribe before the first read (bounded)."""
        end = min(time.monotonic() + 5.0, self.deadline)
        while time.monotonic() < end and not all(t.done() for t in tasks):
            if self._events_alive and (self._logs_alive or not self.stream_logs):
                return
            await asyncio.sleep(0.02)

    def _announce(self, run: FlowRun) -> None:
        if run.state is None:
            return
        self._report_state(run.state.type.value, run.state.name or run.state.type.value, run.state.timestamp)

    def _report_state(self, type_: str, name: str, when: datetime | None) -> bool:
        if when is not None and self._state_time is not None and when < self._state_time:
            return False  # an older state replayed after a reconnect, or an event overtaken by a read
        if when is not None:
            self._state_time = when
        self._current_type = type_
        if name != self._last_state_name:
            self._last_state_name = name
            console.info(f"{self.logs.prefix + ' ' if self.logs.prefix else ''}Flow run is {name} ({self._elapsed()})")
            self.on_state(type_, name)
        return True

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

        def subscribe() -> Any:
            event_filter = EventFilter(
                event=EventNameFilter(prefix=["prefect.flow-run."]),
                any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{self.flow_run_id}"]),
            )
            return get_events_subscriber(filter=event_filter, reconnection_attempts=0)

        async def on_up() -> None:
            self._events_alive = self._events_ever = True
            self._read_now = True  # events of the time it was down may be gone: read the state
            self._changed.set()

        def on_item(event: Any) -> None:
            type_ = event.resource.get("prefect.state-type")
            if not type_ or event.resource.id != f"prefect.flow-run.{self.flow_run_id}":
                return
            if self._report_state(type_, event.resource.get("prefect.state-name") or type_, event.occurred):
                self._event_state = type_
                self._changed.set()

        def on_down() -> None:
            self._events_alive = False
            self._changed.set()

        await self._stream("events", subscribe, on_up, on_item, on_down)

    async def _follow_logs(self) -> None:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.logging.clients import get_logs_subscriber

        def subscribe() -> Any:
            log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[self.flow_run_id]))
            return get_logs_subscriber(filter=log_filter, reconnection_attempts=0)

        async def on_up() -> None:
            self._logs_alive = True
            if self._gap is None:
                return
            try:  # what the stream missed (subscribed first, so nothing falls between)
                await self._read_logs(self._gap.after)
            except PipeError as exc:  # the gap stays open: the next poll or the last read covers it
                console.debug(f"Could not read back the logs the stream missed: {exc}")

        def on_item(log: Any) -> None:
            self.logs.streamed = True
            self.logs(log)

        def on_down() -> None:
            self._logs_alive = False
            latest = self.logs.latest_timestamp
            after = latest - GAP_MARGIN if latest is not None else None
            if self._gap is not None and (self._gap.after is None or (after is not None and self._gap.after < after)):
                after = self._gap.after  # an earlier stretch is still open
            self._gap = _Gap(after)  # a new object: a read that began before this drop does not close it
            self._changed.set()

        await self._stream("logs", subscribe, on_up, on_item, on_down)

    # -- logs by request ---------------------------------------------------------------------------

    async def _collect_last_lines(self, run: FlowRun) -> None:
        """The flow process ships its last batch of lines as it exits, just after the final state.
        Wait (bounded) for the engine's closing line, then read the last stretch once to fill gaps.
        The run's outcome is known by now: a read that fails costs lines (said so), not the result."""
        try:
            async with asyncio.timeout(FINAL_LOGS_BUDGET):
                await self._linger(run)
                await self._read_logs(self._backfill_after(run))
        except (TimeoutError, PipeError) as exc:
            detail = str(exc) or f"no answer within {FINAL_LOGS_BUDGET:.0f}s"
            console.warning(f"The last log lines of the run could not be read ({detail}); see the run in Prefect")

    async def _linger(self, run: FlowRun) -> None:
        """Until the flow's closing line has come and the stream has been quiet for LINGER_QUIET
        (lines logged with it, e.g. the engine's last error, can come in the same or the next
        batch), or a quiet spell for runs that end without one; bounded by LINGER_MAX."""
        start = time.monotonic()
        expect_closing_line = state_type(run) in ("COMPLETED", "FAILED")
        while time.monotonic() - start < (LINGER_MAX if expect_closing_line else LINGER_QUIET_MAX):
            now = time.monotonic()
            if self.logs.finished_line_seen and now - self.logs.last_seen >= LINGER_QUIET:
                return
            if not expect_closing_line and now - max(self.logs.last_seen, start) >= LINGER_QUIET:
                return
            if self.logs.streamed and self._logs_alive:
                await asyncio.sleep(0.02)
            else:
                await self._read_logs(self._poll_after())
                await asyncio.sleep(LINGER_QUIET)

    def _poll_after(self) -> datetime | None:
        if self._gap is not None:
            return self._gap.after  # first what no stream covered
        latest = self.logs.latest_timestamp
        return latest - timedelta(seconds=5) if latest else None

    def _backfill_after(self, run: FlowRun) -> datetime | None:
        """From BACKFILL_WINDOW before the end, or from the start of a stretch no stream covered."""
        if self._gap is not None and self._gap.after is None:
            return None
        end = run.end_time or (run.state.timestamp if run.state else None)
        if end is None:
            return None
        after = end - BACKFILL_WINDOW
        if self._gap is not None and self._gap.after is not None:
            after = min(after, self._gap.after)
        return after if run.start_time is None or after > run.start_time else None

    async def _read_logs(self, after: datetime | None) -> None:
        """Read (paged) every line after ``after``. A complete read that covers the open gap closes
        it only if the logs stream was subscribed when the read began: lines that reach the server
        after a read made while the stream is down are in neither, so such a read only moves the
        gap's start up to what it has seen."""
        gap, stream_up = self._gap, self._logs_alive
        offset = 0
        for _ in range(MAX_LOG_PAGES):
            page: list[Any] = await self.api.read_logs(self.flow_run_id, after=after, offset=offset)
            for log in page:
                self.logs(log)
            if len(page) < LOGS_PAGE:
                break
            offset += len(page)
        if gap is None or self._gap is not gap:
            return  # no gap, or another stretch opened meanwhile: that one stays open
        if after is not None and (gap.after is None or after > gap.after):
            return  # began after the gap's start: does not cover it
        latest = self.logs.latest_timestamp
        if stream_up:
            self._gap = None
        elif latest is not None and (gap.after is None or latest - GAP_MARGIN > gap.after):
            self._gap = _Gap(latest - GAP_MARGIN)


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
