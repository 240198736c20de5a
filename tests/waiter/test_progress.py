"""What the user reads about the wait: runs named by their labels, elapsed times in one format."""

from __future__ import annotations

import uuid
from typing import Any

from pipe.waiter.progress import Progress


def test_several_runs_are_named_by_their_labels(caplog: Any) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    progress = Progress([a, b], {a: "etl/a", b: "etl/b"})
    assert (progress.tag(a), progress.tag(b)) == ("[etl/a]", "[etl/b]")
    progress.state(a, "Running")
    progress.still_waiting({a: "Running", b: None})
    assert caplog.messages == [
        "[etl/a] Flow run is Running (0s)",
        "Still waiting after 0s for 2 flow runs: etl/a Running, etl/b waiting",
    ]


def test_a_single_run_is_not_named(caplog: Any) -> None:
    a = uuid.uuid4()
    progress = Progress([a], {a: "etl/a"})
    assert progress.tag(a) == ""
    progress.state(a, "Pending")
    progress.still_waiting({a: "Pending"})
    assert caplog.messages == ["Flow run is Pending (0s)", "Still Pending after 0s"]
    assert Progress([a, uuid.uuid4()], {}).tag(a) == ""  # no labels given


def test_elapsed_time_is_whole_seconds_in_the_pipes_format() -> None:
    progress = Progress([uuid.uuid4()], {})
    progress.started -= 185.7
    assert progress.elapsed() == "3m 05s"
    progress.started += 185.7 - 42.4
    assert progress.elapsed() == "42s"
