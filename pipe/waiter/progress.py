"""What the user sees of the wait: each new state of a run, and now and then how long it has been.

Runs are named by the labels the caller gives (deployment names such as ``etl/a``). A step that
follows a single run names none: every line is about that run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from uuid import UUID

from pipe import console
from pipe.durations import format_duration

PROGRESS_EVERY = 300.0  # seconds between "Still waiting ..." lines


class Progress:
    """Announces state changes and the time waited so far, naming runs by their labels."""

    def __init__(self, flow_run_ids: Sequence[UUID], labels: Mapping[UUID, str]) -> None:
        self.single = len(flow_run_ids) == 1
        self.labels: Mapping[UUID, str] = {} if self.single else labels
        self.started = time.monotonic()

    def tag(self, flow_run_id: UUID) -> str:
        """``[etl/a]``: how a line (a state, a log line) names its run; empty without a label."""
        label = self.labels.get(flow_run_id)
        return f"[{label}]" if label else ""

    def state(self, flow_run_id: UUID, name: str, elapsed: str | None = None) -> None:
        """``elapsed``: when the state was learnt, if it is told later (after lines that came before it)."""
        tag = self.tag(flow_run_id)
        lead = f"{tag} " if tag else ""
        console.info(f"{lead}Flow run is {name} ({elapsed or self.elapsed()})")

    def still_waiting(self, state_names: Mapping[UUID, str | None]) -> None:
        """``state_names``: the runs still waiting, each with its state's name (None: none known yet)."""
        if self.single:
            name = next(iter(state_names.values()))
            console.info(f"Still {name or 'waiting'} after {self.elapsed()}")
            return
        states = ", ".join(f"{self.labels.get(id_, '')} {name or 'waiting'}" for id_, name in state_names.items())
        console.info(f"Still waiting after {self.elapsed()} for {len(state_names)} flow runs: {states}")

    def elapsed(self) -> str:
        """Whole seconds since the wait began: ``0s``, ``42s``, ``3m 05s``."""
        seconds = int(time.monotonic() - self.started)
        # format_duration writes a fraction of a second in ms; the waiter counts whole seconds.
        return format_duration(seconds) if seconds else "0s"
