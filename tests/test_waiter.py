"""The waiter's pure decisions: how log reads of several runs are grouped, and when a finished run's
logs count as complete. (Following real runs is tested end to end in test_pipe, test_fanout and
tests/faults.)"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from pipe import waiter
from pipe.waiter import LogPrinter, _groups, _Run, _settled

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def run(state: str | None = None, final_since: float | None = None) -> _Run:
    flow_run: Any = None
    if state is not None:
        flow_run = SimpleNamespace(state=SimpleNamespace(type=SimpleNamespace(value=state)))
    return _Run(uuid.uuid4(), LogPrinter(enabled=False), flow_run=flow_run, final_since=final_since)


def test_runs_read_from_the_start_share_one_read_and_never_drag_the_others_back() -> None:
    queued, fresh, busy = run(), run(), run()
    groups = _groups([(queued, None), (busy, T0 + timedelta(minutes=50)), (fresh, None)])
    assert [(after, [r.id for r in runs]) for after, runs in groups] == [
        (None, [queued.id, fresh.id]),
        (T0 + timedelta(minutes=50), [busy.id]),
    ]


def test_close_starts_share_a_read_far_ones_do_not() -> None:
    a, b, c = run(), run(), run()
    groups = _groups([(c, T0 + timedelta(minutes=59)), (a, T0), (b, T0 + timedelta(seconds=20))])
    assert [(after, [r.id for r in runs]) for after, runs in groups] == [
        (T0, [a.id, b.id]),
        (T0 + timedelta(minutes=59), [c.id]),
    ]
    assert _groups([]) == []


def test_a_completed_run_is_settled_shortly_after_its_closing_line() -> None:
    now = time.monotonic()
    completed = run("COMPLETED", final_since=now - 1.0)
    assert not _settled(completed, now)  # no closing line yet, LINGER_MAX not reached
    completed.logs.finished_line_seen, completed.logs.last_seen = True, now - waiter.LINGER_QUIET / 2
    assert not _settled(completed, now)
    assert _settled(completed, now + waiter.LINGER_QUIET)


def test_a_failed_run_waits_longer_after_its_closing_line() -> None:
    """The engine logs once more after a failed run's closing line, possibly in the next shipment."""
    now = time.monotonic()
    failed = run("FAILED", final_since=now)
    failed.logs.finished_line_seen, failed.logs.last_seen = True, now
    assert not _settled(failed, now + waiter.LINGER_QUIET)
    assert _settled(failed, now + waiter.LINGER_FAILED_QUIET)


def test_waiting_for_a_closing_line_is_bounded() -> None:
    now = time.monotonic()
    assert _settled(run("COMPLETED", final_since=now - waiter.LINGER_MAX), now)
    crashed = run("CRASHED", final_since=now)  # no closing line comes: a quiet spell
    crashed.logs.last_seen = now
    assert not _settled(crashed, now)
    assert _settled(crashed, now + waiter.LINGER_NO_CLOSE_QUIET)
    assert not _settled(run("RUNNING"), now + 100)  # not final: never settled


def test_a_run_that_starts_again_after_ending_is_followed_to_its_new_end(caplog: Any) -> None:
    """Completed, then scheduled again (a retry from the UI, an automation): the earlier ending and
    its closing line must not end the wait or the logs of the new attempt; older states are ignored."""
    id_ = uuid.uuid4()
    w = waiter.Waiter(api=None, flow_run_ids=[id_], deadline=time.monotonic() + 60)  # type: ignore[arg-type]
    r = w.runs[id_]
    assert w._report_state(r, "COMPLETED", "Completed", T0)
    r.final_by_event, r.final_since, r.logs.finished_line_seen = True, time.monotonic(), True
    assert not w._report_state(r, "RUNNING", "Running", T0 - timedelta(seconds=1))  # replayed, older
    assert r.final_by_event
    assert w._report_state(r, "SCHEDULED", "AwaitingRetry", T0 + timedelta(seconds=1))
    assert (r.final_by_event, r.final_since, r.logs.finished_line_seen) == (False, None, False)
    assert [m for m in caplog.messages if "Flow run is" in m] == [
        "Flow run is Completed (0s)",
        "Flow run is AwaitingRetry (0s)",
    ]
