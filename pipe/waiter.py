"""Wait: follow a flow run to its final state, streaming its logs.

State changes come from Prefect's events websocket and log lines from its logs websocket, so a
waiting pipe sends almost no HTTP requests and notices the end at once. When a websocket cannot
be had (a proxy that blocks them, a server without them) the waiter falls back to polling with a
growing interval. Log lines are de-duplicated by id, and once the run is final one paged read of
the last stretch of logs picks up lines that reached the server after the final state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pipe import console
from pipe.prefect_api import LOGS_PAGE, PrefectApi

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, Log

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
PROGRESS_EVERY = 300.0


def state_type(run: FlowRun) -> str | None:
    return run.state.type.value if run.state is not None else None


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
        if log.message.startswith(FINISHED_PREFIX):
            self.finished_line_seen = True
        if self.enabled:
            console.remote(log.timestamp, log.level, log.message, self.prefix)
            self.printed += 1


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
        self._logs_alive = False
        self._last_state_name: str | None = None
        self._current_type: str | None = None

    # -- the loop ------------------------------------------------------------------------------

    async def wait(self) -> WaitOutcome:
        tasks = [asyncio.create_task(self._follow_events(), name="events")]
        if self.stream_logs:
            tasks.append(asyncio.create_task(self._follow_logs(), name="logs"))
        try:
            await self._connected(tasks)
            run = await self.api.read_flow_run(self.flow_run_id)  # the first event may predate the subscription
            self._announce(run)
            state_every, logs_every = self._state_interval(), POLL_START
            next_state = time.monotonic() + state_every
            next_logs = time.monotonic() + logs_every
            last_progress = time.monotonic()
            while state_type(run) not in FINAL:
                now = time.monotonic()
                if now >= self.deadline:
                    return WaitOutcome(run, timed_out=True, used_websockets=self._events_alive)
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
                    await self._read_logs(self._poll_after())
                    logs_every = min(logs_every * POLL_GROWTH, POLL_MAX)
                    next_logs = now + logs_every
                if now >= next_state:
                    run = await self.api.read_flow_run(self.flow_run_id)
                    self._announce(run)
                    state_every = self._state_interval(state_every)
                    next_state = time.monotonic() + state_every
                if now - last_progress >= PROGRESS_EVERY:
                    last_progress = now
                    console.info(f"Still {self._last_state_name or 'waiting'} after {self._elapsed()}")
            if self.stream_logs:
                await self._collect_last_lines(run)
            return WaitOutcome(run, used_websockets=self._events_alive)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _state_interval(self, previous: float | None = None) -> float:
        """With a live events stream a read is only insurance; without one it is the poll."""
        if self._events_alive:
            return SAFETY_READ_START if previous is None else min(max(previous, SAFETY_READ_START) * 2, SAFETY_READ_MAX)
        return POLL_START if previous is None else min(previous * POLL_GROWTH, POLL_MAX)

    def _polling_logs(self) -> bool:
        """Read logs by request while the stream has delivered nothing (a server may not stream
        logs at all: self-hosted servers need PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED)."""
        return self.stream_logs and not self.logs.streamed and self._current_type not in (None, "SCHEDULED")

    async def _connected(self, tasks: list[asyncio.Task[None]]) -> None:
        """Give the websockets a moment to subscribe before the first read (bounded)."""
        end = time.monotonic() + 5.0
        while time.monotonic() < end and not all(t.done() for t in tasks):
            if self._events_alive and (self._logs_alive or not self.stream_logs):
                return
            await asyncio.sleep(0.02)

    def _announce(self, run: FlowRun) -> None:
        if run.state is None:
            return
        self._report_state(run.state.type.value, run.state.name or run.state.type.value)

    def _report_state(self, type_: str, name: str) -> None:
        self._current_type = type_
        if name != self._last_state_name:
            self._last_state_name = name
            console.info(f"{self.logs.prefix + ' ' if self.logs.prefix else ''}Flow run is {name} ({self._elapsed()})")
            self.on_state(type_, name)

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

    # -- websockets ------------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        event_filter = EventFilter(
            event=EventNameFilter(prefix=["prefect.flow-run."]),
            any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{self.flow_run_id}"]),
        )
        try:
            async with get_events_subscriber(
                filter=event_filter, reconnection_attempts=5, reconnect_on_clean_close=True
            ) as events:
                self._events_alive = True
                async for event in events:
                    type_ = event.resource.get("prefect.state-type")
                    if not type_ or event.resource.id != f"prefect.flow-run.{self.flow_run_id}":
                        continue
                    self._event_state = type_
                    self._report_state(type_, event.resource.get("prefect.state-name") or type_)
                    self._changed.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            console.debug(f"Events stream unavailable ({type(exc).__name__}: {exc}); polling instead")
        finally:
            self._events_alive = False
            self._changed.set()

    async def _follow_logs(self) -> None:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.logging.clients import get_logs_subscriber

        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[self.flow_run_id]))
        try:
            async with get_logs_subscriber(
                filter=log_filter, reconnection_attempts=5, reconnect_on_clean_close=True
            ) as logs:
                self._logs_alive = True
                async for log in logs:
                    self.logs.streamed = True
                    self.logs(log)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            console.debug(f"Logs stream unavailable ({type(exc).__name__}: {exc}); reading logs by polling")
        finally:
            self._logs_alive = False

    # -- logs by request ---------------------------------------------------------------------------

    async def _collect_last_lines(self, run: FlowRun) -> None:
        """The flow process ships its last batch of lines as it exits, just after the final state.
        Wait (bounded) for the engine's closing line, then read the last stretch once to fill gaps."""
        start = time.monotonic()
        expect_closing_line = state_type(run) in ("COMPLETED", "FAILED")
        while time.monotonic() - start < (LINGER_MAX if expect_closing_line else LINGER_QUIET_MAX):
            if expect_closing_line and self.logs.finished_line_seen:
                break
            if not expect_closing_line and time.monotonic() - max(self.logs.last_seen, start) >= LINGER_QUIET:
                break
            if self.logs.streamed and self._logs_alive:
                await asyncio.sleep(0.02)
            else:
                await self._read_logs(self._poll_after())
                if expect_closing_line and self.logs.finished_line_seen:
                    return
                await asyncio.sleep(0.5)
        await self._read_logs(self._backfill_after(run))

    def _poll_after(self) -> datetime | None:
        latest = self.logs.latest_timestamp
        return latest - timedelta(seconds=5) if latest else None

    def _backfill_after(self, run: FlowRun) -> datetime | None:
        end = run.end_time or (run.state.timestamp if run.state else None)
        if end is None:
            return None
        after = end - BACKFILL_WINDOW
        return after if run.start_time is None or after > run.start_time else None

    async def _read_logs(self, after: datetime | None) -> None:
        offset = 0
        while True:
            page: list[Any] = await self.api.read_logs(self.flow_run_id, after=after, offset=offset)
            for log in page:
                self.logs(log)
            if len(page) < LOGS_PAGE:
                return
            offset += len(page)
