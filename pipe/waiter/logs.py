"""The runs' log lines: printed once each, whichever path they came by, and none lost.

The logs stream is live only: every stretch it did not cover (before it connected, while it was down)
is kept as a gap and read back by request, so no line is lost or printed twice across reconnects.
The stream also drops lines silently: the server keeps at most 256 lines waiting per subscriber and
drops the rest (a flow logging 100,000 lines: 1,550 streamed). It cannot say so, but a drop needs a
full backlog, which reaches the pipe as a burst: a burst opens a gap, read back by request.
Reads of several runs share requests where their starts allow.

Logs are a view of the run, never its verdict: a read that fails (retries included) is told once,
log display stops, and the run's state is still followed to its end.

A run's last lines reach the server after its final state: the flow process ships them as it exits,
right after the engine's closing "Finished in state ..." line. The waiter waits for that line
(bounded) and then reads by request only what no stream was sure to deliver.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pipe import console
from pipe.errors import PipeError
from pipe.prefect_api import LOGS_PAGE, PrefectApi
from pipe.waiter.lines import FINISHED_PREFIX, LogPrinter
from pipe.waiter.streams import Notices, Stream

if TYPE_CHECKING:
    from pipe.waiter.states import FollowedRun

__all__ = ["FINISHED_PREFIX", "Gap", "LogPrinter", "Logs"]

R = TypeVar("R")

# The engine's own last line (FINISHED_PREFIX). Completed and failed runs log it; wait for it at most
# LINGER_MAX, or LINGER_MAX_SHIPPING once the flow process is known to ship its lines (a flow that
# logged 3,000 lines in 2 s had them stored 3-6 s after its end on this 2-core machine). After
# a completed run's closing line nothing follows: a short quiet spell lets the lines shipped with it
# land (milliseconds). A failed run's engine logs once more ("Engine execution exited ..."), which
# can go in the next shipment, a round trip later: a longer spell. Runs that end without the line
# (crashed, cancelled) get a longer spell too, at most LINGER_NO_CLOSE_MAX.
LINGER_MAX, LINGER_MAX_SHIPPING, LINGER_QUIET, LINGER_FAILED_QUIET = 3.0, 15.0, 0.15, 0.5
LINGER_NO_CLOSE_QUIET, LINGER_NO_CLOSE_MAX = 0.5, 1.5
# Reading logs by request while lingering (no live logs stream): the closing line reaches the server
# 0.16-1.2 s after the run's end (median 0.73 s), so the first read comes LINGER_FIRST after the end
# and the next every LINGER_POLL: at most 4 reads, the line seen ~0.13 s after it arrived.
LINGER_FIRST, LINGER_POLL = 0.45, 0.25
# The last read of a run's logs covers this much before its end (the flow ships lines every ~2 s).
BACKFILL_WINDOW = timedelta(seconds=30)
# Reading back what a stream missed starts this far before the last line it delivered.
GAP_MARGIN = timedelta(seconds=10)
# The last lines (after the final states) may take this long in all, reads included.
FINAL_LOGS_BUDGET = 20.0
MAX_LOG_PAGES = 500  # 100,000 lines in one read
# Runs whose reads start within this span of each other share one read (from the earliest start).
READ_GROUP_SPAN = timedelta(seconds=30)
# The server drops what exceeds 256 lines waiting for a subscriber; a full backlog reaches the pipe
# as at least that many lines back to back. BURST_LINES within BURST_SPAN: lines may have been dropped.
# A pipe short of CPU takes them slower than the server sends: the span is generous (40 lines a second).
BURST_LINES, BURST_SPAN = 200, 5.0


@dataclass
class Gap:
    """A stretch the logs stream did not cover: read back everything after ``after`` (None: all)."""

    after: datetime | None


class Logs:
    """Every run's lines, by the logs stream and by request; what the stream missed, read back."""

    def __init__(
        self,
        api: PrefectApi,
        runs: Mapping[UUID, FollowedRun],
        stream: Stream,
        enabled: bool,
        notices: Notices | None = None,
    ) -> None:
        self.api = api
        self.runs = runs
        self.stream = stream
        self.enabled = enabled  # STREAM_LOGS; off for good after a failed read
        self.notices = notices or Notices()
        self.streamed = False  # a line arrived through the logs websocket: the server streams them
        self._burst: deque[tuple[float, UUID, datetime]] = deque(maxlen=BURST_LINES)

    def live(self) -> bool:
        return self.stream.alive and self.streamed

    def polling(self) -> bool:
        """Read logs by request unless a live stream has proven that it delivers them (a server may
        not stream logs at all: self-hosted servers need PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED),
        and while a started run has a stretch the stream did not cover."""
        started = [run for run in self.runs.values() if run.started]
        if not self.enabled or not started:
            return False
        return not self.live() or any(run.gap is not None for run in started)

    def stop_showing(self, exc: PipeError) -> None:
        """A read failed (retries included): say so once and show no more lines; the run's state
        is still followed, since logs never decide how the wait ends."""
        self.notices.warn_once(
            "logs",
            f"Could not read the flow run's logs ({exc.message}); no more log lines are shown here, the run"
            " is still followed to its end: see its logs in Prefect",
        )
        self.enabled = False
        for run in self.runs.values():
            run.logs.enabled = False

    # -- the logs stream -------------------------------------------------------------------------

    async def on_up(self) -> None:
        """Read back what the stream missed of the runs that have started (subscribed first, so
        nothing falls between); a run not started yet has no lines, or the first poll reads them."""
        missed = [run for run in self.runs.values() if run.gap is not None and run.started]
        if missed and self.enabled:
            await self.read_from([(run, run.gap.after if run.gap else None) for run in missed])

    def on_item(self, log: Any) -> None:
        run = self.runs.get(log.flow_run_id)
        if run is not None:
            self.streamed = True
            run.logs(log)
            self._burst.append((time.monotonic(), run.id, log.timestamp))
            if len(self._burst) == BURST_LINES and self._burst[-1][0] - self._burst[0][0] < BURST_SPAN:
                self._may_have_dropped()

    def _may_have_dropped(self) -> None:
        """A burst came: open a gap in each run it carried, from a margin before its first line there."""
        console.debug(f"{BURST_LINES} log lines came within {BURST_SPAN:.0f}s: the stream may have dropped some")
        firsts: dict[UUID, datetime] = {}
        for _, run_id, timestamp in self._burst:
            firsts[run_id] = min(timestamp, firsts.get(run_id, timestamp))
        self._burst.clear()
        for run_id, first in firsts.items():
            run = self.runs[run_id]
            after: datetime | None = first - GAP_MARGIN
            if run.gap is not None and (run.gap.after is None or (after is not None and run.gap.after < after)):
                after = run.gap.after  # an earlier stretch is still open
            run.gap = Gap(after)

    def on_down(self) -> None:
        for run in self.runs.values():
            latest = run.logs.latest_timestamp
            after = latest - GAP_MARGIN if latest is not None else None
            if run.gap is not None and (run.gap.after is None or (after is not None and run.gap.after < after)):
                after = run.gap.after  # an earlier stretch is still open
            run.gap = Gap(after)  # a new object: a read that began before this drop does not close it

    # -- by request ------------------------------------------------------------------------------

    async def poll(self) -> None:
        now = time.monotonic()
        runs = [
            run for run in self.runs.values() if run.started and not (run.final and settled(run, now, self.covers(run)))
        ]
        await self.read_from([(run, poll_after(run)) for run in runs])

    async def collect_last_lines(self, runs: list[FollowedRun], budget: float = FINAL_LOGS_BUDGET) -> None:
        """Wait (bounded) for each run's closing lines, then read the last stretch of every run whose
        lines a live stream did not surely deliver (a gap, no stream, or no closing line). The outcome
        is known by now: a read that fails costs lines (said so), not the result."""
        if not self.enabled or not runs or budget <= 0:
            return
        pending = runs  # those whose last lines may not all have been read
        try:
            async with asyncio.timeout(budget):
                await self._linger(runs)
                # A run read back once already is read again if its closing line never came: lingering
                # ends after LINGER_MAX whether or not reads failed meanwhile, and lines must not go unseen.
                pending = [
                    run
                    for run in runs
                    if not (self.covers(run) and run.logs.finished_line_seen)
                    and (not run.backfilled or not run.logs.finished_line_seen)
                ]
                if pending:
                    console.debug(f"Reading the last log lines of {len(pending)} flow run(s) by request")
                await self.read_from([(run, backfill_after(run)) for run in pending])
                self._say_missing_closing_lines(runs)
        except TimeoutError:
            for run in pending:
                console.warning(
                    f"{run.logs.prefix} Not every log line of the run was shown ({run.logs.count} read before the"
                    f" {budget:.0f}s allowed for the last ones ran out); see them all in Prefect:"
                    f" {self.api.flow_run_url(run.id)}".lstrip()
                )

    def _say_missing_closing_lines(self, runs: list[FollowedRun]) -> None:
        """A completed or failed run always logs its closing line: without it, lines may be missing."""
        for run in runs:
            if self.enabled and run.read_type in ("COMPLETED", "FAILED") and not run.logs.finished_line_seen:
                console.warning(
                    f"{run.logs.prefix} The run's closing log line did not arrive in time: some of its last lines"
                    f" may be missing here ({run.logs.count} shown); see them all in Prefect:"
                    f" {self.api.flow_run_url(run.id)}".lstrip()
                )

    async def _linger(self, runs: list[FollowedRun]) -> None:
        """Wait for each run's last lines: on the live stream, or else (no stream, or a stretch it
        did not cover) by request every LINGER_POLL from LINGER_FIRST after the end (the closing
        line is hardly ever there sooner); the first read after the end covers the last
        BACKFILL_WINDOW, so none is needed after."""
        while self.enabled and (
            open_runs := [run for run in runs if not settled(run, time.monotonic(), self.covers(run))]
        ):
            unread = [run for run in open_runs if not self.covers(run)]
            ended = min((run.final_since or 0.0 for run in unread), default=0.0)
            if not unread or ended + LINGER_FIRST > time.monotonic():
                await asyncio.sleep(0.02)
                continue
            fresh = [run for run in unread if not run.backfilled]
            await self.read_from(
                [(run, backfill_after(run)) for run in fresh]
                + [(run, poll_after(run)) for run in unread if run.backfilled]
            )
            for run in fresh:
                run.backfilled = self.enabled
            if [run for run in runs if not settled(run, time.monotonic(), self.covers(run))]:
                await asyncio.sleep(LINGER_POLL)

    def covers(self, run: FollowedRun) -> bool:
        """The live stream brings every new line of ``run`` (no stretch of it is open)."""
        return self.live() and run.gap is None

    async def read_from(self, starts: list[tuple[FollowedRun, datetime | None]]) -> None:
        """Read each run's lines after its own start in as few requests as overlap allows: runs read
        from the beginning together (they have few lines, or none yet), the others in groups whose
        starts lie within READ_GROUP_SPAN of each other, each from its earliest start. A read that
        fails stops log display (see :meth:`stop_showing`)."""
        try:
            for after, runs in read_groups(starts):
                await self._read(runs, after)
        except PipeError as exc:
            self.stop_showing(exc)

    async def _read(self, runs: list[FollowedRun], after: datetime | None) -> None:
        """Read (paged) every line of ``runs`` after ``after``. A complete read that covers a run's
        open gap closes it only if the logs stream was subscribed when the read began: lines that
        reach the server after a read made while the stream is down are in neither, so such a read
        only moves the gap's start up to what it has seen."""
        gaps, stream_up = {run.id: run.gap for run in runs}, self.stream.alive
        offset, complete = 0, False
        for _ in range(MAX_LOG_PAGES):
            if not self.enabled:
                return
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
                run.gap = Gap(latest - GAP_MARGIN)


def settled(run: FollowedRun, now: float, live: bool = True) -> bool:
    """A final run's logs are complete: its closing line has come and a quiet spell has passed since
    the last line (lines logged with or after it can come in the same or the next shipment), or a
    quiet spell for runs that end without one; each bounded. Read by request (not ``live``), a
    completed run's closing line came with all it was shipped with: no spell."""
    if run.final_since is None:
        return False
    waited = now - run.final_since
    type_ = run.read_type
    if type_ in ("COMPLETED", "FAILED"):
        spell = LINGER_QUIET if type_ == "COMPLETED" else LINGER_FAILED_QUIET
        if type_ == "COMPLETED" and not live:
            spell = 0.0
        quiet = run.logs.finished_line_seen and now - run.logs.last_seen >= spell
        return quiet or waited >= (LINGER_MAX_SHIPPING if run.logs.shipping else LINGER_MAX)
    return now - max(run.logs.last_seen, run.final_since) >= LINGER_NO_CLOSE_QUIET or waited >= LINGER_NO_CLOSE_MAX


def poll_after(run: FollowedRun) -> datetime | None:
    """Where a poll of a run's lines starts: first what no stream covered, else a little before the
    newest line seen (None: from the beginning)."""
    if run.gap is not None:
        return run.gap.after
    latest = run.logs.latest_timestamp
    return latest - timedelta(seconds=5) if latest else None


def backfill_after(run: FollowedRun) -> datetime | None:
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


def read_groups(starts: list[tuple[R, datetime | None]]) -> list[tuple[datetime | None, list[R]]]:
    """``starts`` grouped for reading: those from the beginning, then by READ_GROUP_SPAN."""
    from_start = [run for run, after in starts if after is None]
    groups: list[tuple[datetime | None, list[R]]] = [(None, from_start)] if from_start else []
    dated = sorted(((after, run) for run, after in starts if after is not None), key=lambda pair: pair[0])
    for after, run in dated:
        group_start = groups[-1][0] if groups else None
        if group_start is not None and after - group_start <= READ_GROUP_SPAN:
            groups[-1][1].append(run)
        else:
            groups.append((after, [run]))
    return groups
