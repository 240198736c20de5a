"""What the wait prints, in the order it happened rather than the order it arrived.

A run's lines reach the pipe out of order: state events come at once, log lines in shipments (the
flow process ships every ~2 s, the worker its own lines separately), read back lines later still.
Each line is held for a short window and then printed in timestamp order with everything else held.
A run's final state is told after its last lines (see :mod:`pipe.waiter.states`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# How long a line is held for older ones to arrive: a shipment interval (~2 s) and a little more.
# Whichever comes first ends it: its timestamp this far in the past (a run's lines arrive by then),
# or this long after it arrived (a remote clock ahead of ours must not hold lines back for long).
REORDER_WINDOW = timedelta(seconds=2.5)
FLUSH_EVERY = 0.2  # seconds between releases of what is due


@dataclass(order=True)
class _Entry:
    when: datetime
    seq: int
    show: Callable[[], None] = field(compare=False)
    ready: Callable[[], bool] = field(compare=False)


class Timeline:
    """Holds each line for REORDER_WINDOW, then prints what is due in timestamp order. An entry that
    is not ``ready`` (its task's name is being read) holds back itself and what follows it."""

    def __init__(self, window: timedelta = REORDER_WINDOW) -> None:
        self.window = window
        self._heap: list[_Entry] = []
        self._arrivals: deque[tuple[float, datetime]] = deque()
        self._due_until = datetime.min.replace(tzinfo=UTC)  # entries up to here are due (held long enough)
        self._seq = itertools.count()

    def add(self, when: datetime | None, show: Callable[[], None], ready: Callable[[], bool] = lambda: True) -> None:
        when = when or datetime.now(UTC)
        heapq.heappush(self._heap, _Entry(when, next(self._seq), show, ready))
        self._arrivals.append((time.monotonic(), when))
        self.release()

    def release(self) -> None:
        """Print, oldest first, everything up to the newest entry that is due."""
        held_since = time.monotonic() - self.window.total_seconds()
        while self._arrivals and self._arrivals[0][0] <= held_since:
            self._due_until = max(self._due_until, self._arrivals.popleft()[1])
        cutoff = max(self._due_until, datetime.now(UTC) - self.window)
        while self._heap and self._heap[0].when <= cutoff and self._heap[0].ready():
            heapq.heappop(self._heap).show()

    def flush(self) -> None:
        """Print everything held, oldest first."""
        self._arrivals.clear()
        while self._heap:
            heapq.heappop(self._heap).show()

    async def run(self, before: Callable[[], Awaitable[None]]) -> None:
        """Release what is due every FLUSH_EVERY seconds, after ``before`` (reading task names)."""
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await before()
            self.release()
