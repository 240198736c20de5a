"""How the wait for each run ended, with what a person needs when it ended badly: a run that no
worker took (its pool, its queue, and whether the pool has a live worker), a run that crashed
before its flow began (in a pull step: the cause is in the worker's log, not the run's).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from pipe import console
from pipe.errors import PipeError
from pipe.outcome import Stall
from pipe.prefect_api import PrefectApi
from pipe.waiter.states import NOT_STARTED, FollowedRun

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

WORKERS_READ_SECONDS = 3.0  # the read of a pool's live workers, for a run nobody took


@dataclass
class WaitOutcome(Stall):
    """How the wait for one run ended: the run as last read; ``timed_out`` if it was not final; why it
    went nowhere (:class:`~pipe.outcome.Stall`), when it did."""

    flow_run: FlowRun
    timed_out: bool = False


async def outcomes(api: PrefectApi, runs: list[FollowedRun]) -> dict[UUID, WaitOutcome]:
    """Each run's outcome; for runs no worker took, how many live workers their pool has (one
    bounded read for each pool)."""
    found = {}
    for run in runs:
        flow_run = run.flow_run
        assert flow_run is not None  # read at the start
        type_ = run.read_type
        found[run.id] = WaitOutcome(
            flow_run,
            timed_out=not run.final,
            never_started=not run.final and not run.ran and type_ in NOT_STARTED,
            crashed_before_flow=type_ == "CRASHED" and not run.ran and not run.logs.flow_began,
            work_pool=flow_run.work_pool_name,
            work_queue=flow_run.work_queue_name,
            last_step=run.logs.last_step,
        )
    pools = sorted({o.work_pool for o in found.values() if o.never_started and o.work_pool})
    workers = {pool: await live_workers(api, pool) for pool in pools}
    for outcome in found.values():
        if outcome.never_started and outcome.work_pool:
            outcome.live_workers = workers[outcome.work_pool]
    return found


async def live_workers(api: PrefectApi, pool: str) -> int | None:
    """The pool's online workers; None when that cannot be read (the outcome is known without it)."""
    try:
        return await asyncio.wait_for(api.live_workers(pool), WORKERS_READ_SECONDS)
    except (TimeoutError, PipeError) as exc:
        console.debug(f"Could not read the workers of work pool {pool!r}: {exc}")
        return None
