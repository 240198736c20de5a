"""Wait: follow the step's flow runs to their final states, streaming their logs.

One events websocket and one logs websocket serve every run of the step, so a waiting pipe sends
almost no HTTP requests and notices each end at once; the reads it still makes (the states at the
start and at the end, logs a stream missed) cover all runs in one request. When a websocket cannot
be had (a proxy that blocks them, a server without them, a redirect, which is never followed) the
waiter falls back to polling with a growing interval. Log lines are de-duplicated by id. Only the
runs' states decide how the wait ends: a failed log read stops the display of lines, nothing more.

The modules, as Prefect splits watching a run:

- ``streams``: the subscriber; keeps each websocket connected and knows when it was down;
- ``states``: what is known of each run's state, from events and reads;
- ``logs``: each run's lines, none lost; what the logs stream missed or dropped, read back by request;
- ``lines``: how a line is shown (task lines marked, repeated tracebacks folded);
- ``timeline``: what is printed, in the order it happened;
- ``progress``: what the user is told of states and time waited;
- ``loop``: the :class:`Waiter`, which paces the reads and decides when waiting ends;
- ``outcomes``: how each run ended, and why when it never started or crashed before its flow.
"""

from __future__ import annotations

from pipe.waiter.loop import DEADLINE_GRACE, Waiter
from pipe.waiter.outcomes import WaitOutcome
from pipe.waiter.streams import STREAM_CLOSE_GRACE

__all__ = ["DEADLINE_GRACE", "STREAM_CLOSE_GRACE", "WaitOutcome", "Waiter"]
