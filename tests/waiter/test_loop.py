"""The wait as a whole, against a stand-in API: logs never decide the verdict, what is printed
comes in the order it happened, and a run that did not start or crashed before its flow says so."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pipe import console
from pipe.errors import PrefectError
from pipe.waiter.lines import LogPrinter
from pipe.waiter.progress import Progress
from pipe.waiter.states import FollowedRun, States
from pipe.waiter.timeline import Timeline
from tests.waiter.fakes import FakeApi, ago, flow_run, line, offline_waiter


def test_a_failed_log_read_warns_once_and_the_run_is_followed_to_its_end(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A server that rejects the log filter (Prefect 3.2 and the ``text`` field) while the run goes on:
    the wait ends with the run's real state, not with the log read's error."""
    id_ = uuid.uuid4()

    def states(read: int) -> list[Any]:
        return [flow_run(id_, "RUNNING", started=ago(1)) if read < 4 else flow_run(id_, "COMPLETED", started=ago(2))]

    api = FakeApi(states)
    api.fail_logs = PrefectError(
        "the Prefect API at prefect.test refused reading the flow run's logs: extra field 'text'"
    )
    outcomes = asyncio.run(offline_waiter(monkeypatch, api, [id_]).wait())
    assert outcomes[id_].flow_run.state.type.value == "COMPLETED"
    assert not outcomes[id_].timed_out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "extra field 'text'" in warnings[0], warnings
    assert len(api.log_reads) == 1  # no more log reads after the first failed


def test_a_run_no_worker_takes_says_so_with_its_pool_and_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    id_ = uuid.uuid4()
    api = FakeApi(lambda _: [flow_run(id_, "SCHEDULED", "Late", pool="etl-pool", queue="nightly")])
    api.workers["etl-pool"] = 0
    outcome = asyncio.run(offline_waiter(monkeypatch, api, [id_], seconds=0.5).wait())[id_]
    assert outcome.timed_out and outcome.never_started
    assert (outcome.work_pool, outcome.work_queue, outcome.live_workers) == ("etl-pool", "nightly", 0)
    assert not outcome.crashed_before_flow


def test_a_run_that_ran_and_timed_out_did_start(monkeypatch: pytest.MonkeyPatch) -> None:
    id_ = uuid.uuid4()
    api = FakeApi(lambda _: [flow_run(id_, "RUNNING", started=ago(1))])
    outcome = asyncio.run(offline_waiter(monkeypatch, api, [id_], seconds=0.5).wait())[id_]
    assert outcome.timed_out and not outcome.never_started and outcome.live_workers is None


def test_a_run_that_crashes_in_its_pull_steps_says_where(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker ran the pull steps, one failed, the process exited 1: Crashed, the flow never began."""
    id_ = uuid.uuid4()

    def states(read: int) -> list[Any]:
        return [flow_run(id_, "PENDING") if read < 3 else flow_run(id_, "CRASHED", ended=ago(0.1))]

    lines = [
        line(id_, ago(3), "Running 1 deployment pull step(s)"),
        line(id_, ago(2.5), "Executing deployment step: git_clone"),
        line(id_, ago(1), "Process for flow run 'x' exited with status code: 1", level=40),
    ]
    outcome = asyncio.run(offline_waiter(monkeypatch, FakeApi(states, lines), [id_]).wait())[id_]
    assert outcome.crashed_before_flow and outcome.last_step == "git_clone"
    assert not outcome.timed_out and not outcome.never_started


def test_a_flow_that_crashes_after_it_began_did_not_crash_before_its_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    id_ = uuid.uuid4()

    def states(read: int) -> list[Any]:
        return [flow_run(id_, "PENDING") if read < 3 else flow_run(id_, "CRASHED", ended=ago(0.1))]

    lines = [line(id_, ago(2), "Beginning flow run 'x' for flow 'crash'"), line(id_, ago(1), "about to crash")]
    outcome = asyncio.run(offline_waiter(monkeypatch, FakeApi(states, lines), [id_]).wait())[id_]
    assert not outcome.crashed_before_flow


def test_lines_and_states_are_printed_in_the_order_they_happened(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo: the final state came by event before the flow's lines, and the deployment step's
    lines before the worker's submission line logged a second earlier. Printed: by time, the final
    state after the run's last line."""
    printed: list[str] = []
    monkeypatch.setattr(console, "remote", lambda when, level, message, prefix="": printed.append(message))
    monkeypatch.setattr(console, "info", printed.append)
    id_ = uuid.uuid4()
    timeline = Timeline()
    run = FollowedRun(id_, LogPrinter(timeline=timeline))
    states = States(None, {id_: run}, Progress([id_], {}), timeline)  # type: ignore[arg-type]
    states.report(run, "RUNNING", "Running", ago(1.5))
    states.report(run, "COMPLETED", "Completed", ago(0.2))  # the event, at once
    for when, message in [
        (ago(1.2), "Executing deployment step: git_clone"),
        (ago(1.9), "Worker 'w' submitting flow run"),  # shipped by the worker, later
        (ago(0.8), "Beginning flow run 'x' for flow 'greet'"),
        (ago(0.5), "hello"),
        (ago(0.1), "Finished in state Completed()"),
    ]:
        run.logs(line(id_, when, message))
    timeline.flush()
    states.tell_final(run)
    assert [text.split(" (")[0] for text in printed] == [
        "Worker 'w' submitting flow run",
        "Flow run is Running",
        "Executing deployment step: git_clone",
        "Beginning flow run 'x' for flow 'greet'",
        "hello",
        "Finished in state Completed()",
        "Flow run is Completed",
    ]


def test_a_completed_run_whose_closing_line_never_came_says_so(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """Lingering ends after LINGER_MAX whatever the reads brought: a completed run without its closing
    line is read once more, and if the line is still not there the pipe says lines may be missing."""
    id_ = uuid.uuid4()
    api = FakeApi(lambda read: [flow_run(id_, "COMPLETED", started=ago(2))], [line(id_, ago(1.5), "a line")])
    asyncio.run(offline_waiter(monkeypatch, api, [id_]).wait())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("closing log line did not arrive" in w and "1 shown" in w for w in warnings), warnings


def test_a_closing_line_that_comes_late_is_read_and_printed(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    id_ = uuid.uuid4()
    api = FakeApi(lambda read: [flow_run(id_, "COMPLETED", started=ago(2))], [line(id_, ago(1.5), "a line")])
    reads = api.read_logs

    async def late(flow_run_ids: list[Any], after: Any, offset: int = 0) -> list[Any]:
        if len(api.log_reads) == 3:  # the closing line reaches the server only now
            api.lines.append(line(id_, ago(0.5), "Finished in state Completed()"))
        return await reads(flow_run_ids, after, offset)

    api.read_logs = late  # type: ignore[method-assign]
    asyncio.run(offline_waiter(monkeypatch, api, [id_]).wait())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert not any("closing log line" in w for w in warnings), warnings
