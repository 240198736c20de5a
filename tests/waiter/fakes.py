"""A stand-in Prefect API for the waiter's unit tests: runs whose states follow a script, log lines
answered as the server pages them, and a record of every read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from pipe.errors import PrefectError
from pipe.prefect_api import LOGS_PAGE


def line(run_id: uuid.UUID, when: datetime, message: str = "a line", task_run_id: Any = None, level: int = 20) -> Any:
    return SimpleNamespace(
        id=uuid.uuid4(), flow_run_id=run_id, timestamp=when, level=level, message=message, task_run_id=task_run_id
    )


def flow_run(
    id_: uuid.UUID,
    type_: str,
    name: str | None = None,
    when: datetime | None = None,
    started: datetime | None = None,
    ended: datetime | None = None,
    pool: str = "pipe-tests",
    queue: str = "default",
) -> Any:
    when = when or datetime.now(UTC)
    state = SimpleNamespace(type=SimpleNamespace(value=type_), name=name or type_.title(), timestamp=when, message=None)
    return SimpleNamespace(
        id=id_,
        state=state,
        start_time=started,
        end_time=ended,
        run_count=1 if started else 0,
        work_pool_name=pool,
        work_queue_name=queue,
    )


class FakeApi:
    """``states(read_number)`` gives the runs as the n-th read finds them; ``lines`` are the stored
    log lines (read after ``after``, paged as the server pages them); ``fail_logs`` makes log reads fail."""

    host = "prefect.test"

    def __init__(self, states: Callable[[int], list[Any]], lines: list[Any] | None = None) -> None:
        self.states = states
        self.lines = lines or []
        self.fail_logs: PrefectError | None = None
        self.state_reads = 0
        self.log_reads: list[tuple[list[Any], datetime | None, int]] = []
        self.workers: dict[str, int] = {}

    async def read_flow_runs(self, flow_run_ids: list[Any]) -> list[Any]:
        self.state_reads += 1
        return [run for run in self.states(self.state_reads) if run.id in flow_run_ids]

    async def read_logs(self, flow_run_ids: list[Any], after: datetime | None, offset: int = 0) -> list[Any]:
        self.log_reads.append((flow_run_ids, after, offset))
        if self.fail_logs is not None:
            raise self.fail_logs
        found = [
            log for log in self.lines if log.flow_run_id in flow_run_ids and (after is None or log.timestamp > after)
        ]
        found.sort(key=lambda log: log.timestamp)
        return found[offset : offset + LOGS_PAGE]

    async def live_workers(self, pool: str) -> int | None:
        return self.workers.get(pool)

    async def task_run_names(self, task_run_ids: list[Any]) -> dict[Any, str]:
        return {id_: f"task-{str(id_)[:3]}" for id_ in task_run_ids}

    def flow_run_url(self, flow_run_id: Any) -> str:
        return f"https://prefect.test/runs/flow-run/{flow_run_id}"


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def offline_waiter(monkeypatch: Any, api: FakeApi, ids: list[uuid.UUID], seconds: float = 10, **kwargs: Any) -> Any:
    """A Waiter whose websockets cannot connect (it polls), with a fast poll."""
    import time

    from pipe.waiter import Waiter, loop, streams

    monkeypatch.setattr(streams, "STREAM_RETRIES", 0)
    monkeypatch.setattr(loop, "POLL_START", 0.05)

    class Refused:
        async def __aenter__(self) -> Any:
            raise ConnectionError("refused")

        async def __aexit__(self, *exc: object) -> None:
            return None

    refused = Refused
    waiter = Waiter(api, ids, time.monotonic() + seconds, **kwargs)  # type: ignore[arg-type]
    waiter.events.subscribe = waiter.logs.stream.subscribe = refused
    return waiter
