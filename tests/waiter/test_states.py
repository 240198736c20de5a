"""The waiter's state decisions: newer states only, a final state by event, a run that starts again."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from pipe import waiter
from pipe.waiter.streams import flow_run_resource

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_a_run_that_starts_again_after_ending_is_followed_to_its_new_end(caplog: Any) -> None:
    """Completed, then scheduled again (a retry from the UI, an automation): the earlier ending and
    its closing line must not end the wait or the logs of the new attempt; older states are ignored."""
    id_ = uuid.uuid4()
    w = waiter.Waiter(api=None, flow_run_ids=[id_], deadline=time.monotonic() + 60)  # type: ignore[arg-type]
    r = w.runs[id_]
    assert w.states.report(r, "COMPLETED", "Completed", T0)
    r.final_by_event, r.final_since, r.logs.finished_line_seen = True, time.monotonic(), True
    assert not w.states.report(r, "RUNNING", "Running", T0 - timedelta(seconds=1))  # replayed, older
    assert r.final_by_event
    assert w.states.report(r, "SCHEDULED", "AwaitingRetry", T0 + timedelta(seconds=1))
    # mypy keeps the values assigned above; report() has reset them.
    assert (r.final_by_event, r.final_since, r.logs.finished_line_seen) == (False, None, False)  # type: ignore[comparison-overlap]
    assert [m for m in caplog.messages if "Flow run is" in m] == [
        "Flow run is Completed (0s)",
        "Flow run is AwaitingRetry (0s)",
    ]


def event(flow_run_id: uuid.UUID, type_: str, name: str, when: datetime) -> Any:
    labels = {"prefect.state-type": type_, "prefect.state-name": name}
    return SimpleNamespace(resource=SimpleNamespace(id=flow_run_resource(flow_run_id), get=labels.get), occurred=when)


def test_a_final_event_marks_the_run_for_a_confirming_read_and_names_it(caplog: Any) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    w = waiter.Waiter(api=None, flow_run_ids=[a, b], deadline=time.monotonic() + 60, labels={a: "etl/a", b: "etl/b"})  # type: ignore[arg-type]
    assert w.states.on_event(event(a, "COMPLETED", "Completed", T0))
    assert w.runs[a].final_by_event and w.runs[a].final_since is not None
    assert not w.runs[a].final  # a read confirms it
    assert not w.states.on_event(event(uuid.uuid4(), "RUNNING", "Running", T0))  # another run's event
    assert not w.states.on_event(event(a, "RUNNING", "Running", T0 - timedelta(seconds=1)))  # replayed, older
    assert w.states.on_event(event(b, "RUNNING", "Running", T0))
    assert not w.runs[b].final_by_event
    assert [m for m in caplog.messages if "Flow run is" in m] == [
        "[etl/a] Flow run is Completed (0s)",
        "[etl/b] Flow run is Running (0s)",
    ]
