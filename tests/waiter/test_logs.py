"""The waiter's log decisions: how reads of several runs are grouped, when a finished run's logs
count as complete, and how the stretches the logs stream missed are kept and closed. (Following real
runs is tested end to end in test_pipe, test_fanout and tests/faults.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from pipe.waiter import logs
from pipe.waiter.logs import Gap, LogPrinter, Logs, poll_after, read_groups, settled
from pipe.waiter.states import FollowedRun
from pipe.waiter.streams import Stream

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def run(state: str | None = None, **fields: Any) -> FollowedRun:
    """A followed run whose last read state is ``state``; ``fields`` as in FollowedRun."""
    flow_run: Any = None
    if state is not None:
        flow_run = SimpleNamespace(state=SimpleNamespace(type=SimpleNamespace(value=state)))
    return FollowedRun(uuid.uuid4(), LogPrinter(enabled=False), flow_run=flow_run, **fields)


def line(run_id: uuid.UUID, when: datetime, message: str = "a line", task_run_id: Any = None) -> Any:
    return SimpleNamespace(
        id=uuid.uuid4(), flow_run_id=run_id, timestamp=when, level=20, message=message, task_run_id=task_run_id
    )


def test_runs_read_from_the_start_share_one_read_and_never_drag_the_others_back() -> None:
    queued, fresh, busy = run(), run(), run()
    groups = read_groups([(queued, None), (busy, T0 + timedelta(minutes=50)), (fresh, None)])
    assert [(after, [r.id for r in runs]) for after, runs in groups] == [
        (None, [queued.id, fresh.id]),
        (T0 + timedelta(minutes=50), [busy.id]),
    ]


def test_close_starts_share_a_read_far_ones_do_not() -> None:
    a, b, c = run(), run(), run()
    groups = read_groups([(c, T0 + timedelta(minutes=59)), (a, T0), (b, T0 + timedelta(seconds=20))])
    assert [(after, [r.id for r in runs]) for after, runs in groups] == [
        (T0, [a.id, b.id]),
        (T0 + timedelta(minutes=59), [c.id]),
    ]
    assert read_groups([]) == []


def test_a_completed_run_is_settled_shortly_after_its_closing_line() -> None:
    now = time.monotonic()
    completed = run("COMPLETED", final_since=now - 1.0)
    assert not settled(completed, now)  # no closing line yet, LINGER_MAX not reached
    completed.logs.finished_line_seen, completed.logs.last_seen = True, now - logs.LINGER_QUIET / 2
    assert not settled(completed, now)
    assert settled(completed, now + logs.LINGER_QUIET)


def test_a_failed_run_waits_longer_after_its_closing_line() -> None:
    """The engine logs once more after a failed run's closing line, possibly in the next shipment."""
    now = time.monotonic()
    failed = run("FAILED", final_since=now)
    failed.logs.finished_line_seen, failed.logs.last_seen = True, now
    assert not settled(failed, now + logs.LINGER_QUIET)
    assert settled(failed, now + logs.LINGER_FAILED_QUIET)


def test_waiting_for_a_closing_line_is_bounded() -> None:
    now = time.monotonic()
    assert settled(run("COMPLETED", final_since=now - logs.LINGER_MAX), now)
    crashed = run("CRASHED", final_since=now)  # no closing line comes: a quiet spell
    crashed.logs.last_seen = now
    assert not settled(crashed, now)
    assert settled(crashed, now + logs.LINGER_NO_CLOSE_QUIET)
    assert not settled(run("RUNNING"), now + 100)  # not final: never settled


def test_each_line_is_printed_once_and_only_the_flow_runs_closing_line_counts(capsys: Any) -> None:
    r = run()
    printer = LogPrinter(prefix="[etl/a]")
    task_end = line(r.id, T0, "Finished in state Completed()", task_run_id=uuid.uuid4())
    first = line(r.id, T0 + timedelta(seconds=1), "hello")
    for log in (task_end, first, first):
        printer(log)
    closing_seen = [printer.finished_line_seen]  # a task run's closing line does not count
    assert printer.latest_timestamp == T0 + timedelta(seconds=1)
    printer(line(r.id, T0 + timedelta(seconds=2), "Finished in state Completed()"))
    closing_seen.append(printer.finished_line_seen)
    assert closing_seen == [False, True]
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3
    assert all(text.startswith("[etl/a] prefect │ ") for text in printed)
    assert sum("hello" in text for text in printed) == 1


class FakeApi:
    """Answers log reads from a list of lines, as the server would (after, paged)."""

    def __init__(self, lines: list[Any]) -> None:
        self.lines = lines
        self.reads: list[tuple[list[Any], datetime | None]] = []

    async def read_logs(self, flow_run_ids: list[Any], after: datetime | None, offset: int = 0) -> list[Any]:
        self.reads.append((flow_run_ids, after))
        return [
            log for log in self.lines if log.flow_run_id in flow_run_ids and (after is None or log.timestamp > after)
        ]


def gap_of(run: FollowedRun) -> Gap | None:
    """The run's open gap (a call, so that type checkers do not carry one assert over to the next)."""
    return run.gap


def follower(runs: list[FollowedRun], lines: list[Any]) -> tuple[Logs, FakeApi]:
    api = FakeApi(lines)
    stream = Stream("logs", subscribe=None, deadline=time.monotonic() + 60)  # type: ignore[arg-type]
    return Logs(api, {r.id: r for r in runs}, stream, enabled=True), api  # type: ignore[arg-type]


def test_a_drop_opens_a_gap_from_a_margin_before_the_last_line_and_keeps_an_earlier_one() -> None:
    seen, fresh = run(gap=None), run(gap=None)
    seen.logs(line(seen.id, T0))
    logs_, _ = follower([seen, fresh], [])
    logs_.on_down()
    assert seen.gap == Gap(T0 - logs.GAP_MARGIN)
    assert fresh.gap == Gap(None)  # nothing seen: everything
    earlier = seen.gap
    seen.logs(line(seen.id, T0 + timedelta(minutes=5)))
    logs_.on_down()
    assert seen.gap is not earlier and seen.gap.after == earlier.after  # the earlier stretch stays open


def test_a_complete_read_closes_a_gap_only_while_the_stream_is_up() -> None:
    r = run(gap=Gap(after=None))
    logs_, api = follower([r], [line(r.id, T0), line(r.id, T0 + timedelta(seconds=30))])
    asyncio.run(logs_.read_from([(r, None)]))
    assert gap_of(r) == Gap(T0 + timedelta(seconds=30) - logs.GAP_MARGIN)  # narrowed, not closed
    logs_.stream.alive = True
    asyncio.run(logs_.read_from([(r, poll_after(r))]))
    assert gap_of(r) is None
    assert api.reads == [([r.id], None), ([r.id], T0 + timedelta(seconds=30) - logs.GAP_MARGIN)]


def test_a_read_that_starts_after_the_gap_leaves_it_open() -> None:
    r = run(gap=Gap(after=T0))
    logs_, _ = follower([r], [line(r.id, T0 + timedelta(minutes=1))])
    logs_.stream.alive = True
    asyncio.run(logs_.read_from([(r, T0 + timedelta(seconds=1))]))
    assert r.gap == Gap(T0)


# -- lines a stream may have dropped, and reads by request ----------------------------------------


def test_a_burst_on_the_stream_is_read_back_so_no_dropped_line_is_lost(capsys: Any) -> None:
    """The server drops what exceeds 256 lines waiting for a subscriber, silently: 1,000 lines stored,
    the first 256 and the closing line streamed. The burst makes the last read fetch the rest."""
    from tests.waiter.fakes import FakeApi, flow_run

    id_ = uuid.uuid4()
    start = datetime.now(UTC) - timedelta(seconds=20)
    stored = [line(id_, start + timedelta(milliseconds=i), f"line {i}") for i in range(1000)]
    stored.append(line(id_, start + timedelta(seconds=2), "Finished in state Completed()"))
    r = FollowedRun(id_, LogPrinter(), gap=None, final_since=time.monotonic() - logs.LINGER_MAX)
    r.flow_run = flow_run(id_, "COMPLETED", started=start, ended=start + timedelta(seconds=2))
    r.current_type = "COMPLETED"
    api = FakeApi(lambda _: [], stored)
    stream = Stream("logs", subscribe=None, deadline=time.monotonic() + 60)  # type: ignore[arg-type]
    stream.alive = True
    logs_ = Logs(api, {id_: r}, stream, enabled=True)  # type: ignore[arg-type]
    for log in [*stored[:256], stored[-1]]:
        logs_.on_item(log)
    asyncio.run(logs_.collect_last_lines([r]))
    printed = capsys.readouterr().out
    assert all(printed.count(f" line {i}\n") == 1 for i in range(1000)), "a line is missing or doubled"
    assert len(api.log_reads) == 6  # the 1,001 lines of the run, in pages of 200


def test_reading_by_request_a_completed_runs_closing_line_ends_the_wait_in_one_read() -> None:
    """Without a live stream the read that brings a completed run's closing line brought all that was
    shipped with it, and it covered the end of the run: no quiet spell, no read after it."""
    from tests.waiter.fakes import FakeApi, flow_run

    id_ = uuid.uuid4()
    start = datetime.now(UTC) - timedelta(seconds=3)
    stored = [line(id_, start, "hello"), line(id_, start + timedelta(seconds=1), "Finished in state Completed()")]
    r = FollowedRun(id_, LogPrinter(enabled=False), gap=None, final_since=time.monotonic() - logs.LINGER_POLL)
    r.flow_run = flow_run(id_, "COMPLETED", started=start, ended=start + timedelta(seconds=1))
    api = FakeApi(lambda _: [], stored)
    stream = Stream("logs", subscribe=None, deadline=time.monotonic() + 60)  # type: ignore[arg-type]
    logs_ = Logs(api, {id_: r}, stream, enabled=True)  # type: ignore[arg-type]
    asyncio.run(logs_.collect_last_lines([r]))
    assert len(api.log_reads) == 1


def test_no_read_back_for_runs_that_have_not_started_when_the_stream_connects() -> None:
    """A run not started has no lines: connecting the stream costs no request for it."""
    from tests.waiter.fakes import FakeApi

    queued = run()
    logs_, _ = follower([queued], [])
    api = FakeApi(lambda _: [])
    logs_.api = api  # type: ignore[assignment]
    asyncio.run(logs_.on_up())
    assert api.log_reads == [] and queued.gap == Gap(None)


# -- how lines look ---------------------------------------------------------------------------------


def test_a_repeated_traceback_is_folded_into_one_line_pointing_at_the_first() -> None:
    from pipe.waiter.lines import fold_traceback

    frames = '  File "flows.py", line 18, in explode\n    raise RuntimeError(reason)\nRuntimeError: boom'
    task = f"Task run failed with exception: RuntimeError('boom')\nTraceback (most recent call last):\n{frames}"
    flow = (
        "Encountered exception during execution: RuntimeError('boom')\nTraceback (most recent call last):\n"
        f'  File "flows.py", line 42, in fail\n    explode(reason)\n{frames}'
    )
    other = 'Something else\nTraceback (most recent call last):\n  File "x.py", line 1, in y\nValueError: no'
    shown: dict[str, str] = {}
    assert fold_traceback(task, shown, "12:00:01") == task
    assert fold_traceback(flow, shown, "12:00:02") == (
        "Encountered exception during execution: RuntimeError('boom')\n"
        "(traceback of RuntimeError: boom as shown at 12:00:01 above)"
    )
    assert fold_traceback(other, shown, "12:00:03") == other
    assert fold_traceback("plain line", shown, "12:00:04") == "plain line"


def test_task_lines_are_marked_with_their_tasks_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ``Finished in state Completed()`` lines: the task's carries the task run's name."""
    from pipe import console
    from pipe.waiter.lines import TaskNames
    from pipe.waiter.timeline import Timeline

    printed: list[tuple[str, str]] = []
    monkeypatch.setattr(console, "remote", lambda when, level, message, prefix="": printed.append((prefix, message)))
    task_id = uuid.uuid4()

    async def names(ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        return {task_id: "explode-c33"}

    tasks, timeline = TaskNames(names), Timeline()
    printer = LogPrinter(prefix="[etl/a]", timeline=timeline, tasks=tasks)
    r = uuid.uuid4()
    printer(line(r, T0, "Finished in state Completed()", task_run_id=task_id))
    printer(line(r, T0 + timedelta(seconds=1), "Finished in state Completed()"))
    assert printed == []  # the task's name is not known yet: it and what follows wait
    asyncio.run(tasks.resolve())
    timeline.release()
    assert printed == [
        ("[etl/a] [explode-c33]", "Finished in state Completed()"),
        ("[etl/a]", "Finished in state Completed()"),
    ]
