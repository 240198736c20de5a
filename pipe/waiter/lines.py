"""How a run's log lines are shown: each once, task lines marked with their task, a repeated
traceback folded into one line.

A failing flow logs the same traceback up to three times (the task's failure, the flow's, the
engine's exit: ~90 lines): the first is shown whole, each repeat as one line pointing at it. Task
runs log lines that read like the flow's own (two ``Finished in state Completed()``), so each is
marked with its task run's name, read by request in batches (bounded; past that, a short id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pipe import console
from pipe.errors import PipeError
from pipe.waiter.timeline import Timeline

if TYPE_CHECKING:
    from prefect.client.schemas.objects import Log

# The engine's own last line; the first line the flow itself logs; a pull step starting.
FINISHED_PREFIX = "Finished in state"
BEGINNING_PREFIX = "Beginning flow run"
DEPLOYMENT_STEP_PREFIX = "Executing deployment step: "
TRACEBACK_HEAD = "Traceback (most recent call last):"
WORKER_LOGGER = "prefect.flow_runs.worker"  # the worker's lines about the run; the rest are the flow process's
MAX_TRACEBACKS = 100  # tracebacks remembered per run for folding
# Reads of task names per wait, each bounded: past them, task lines carry a short id.
TASK_NAME_READS, TASK_NAME_READ_SECONDS = 5, 3.0

ReadNames = Callable[[list[UUID]], Awaitable[dict[UUID, str]]]


class TaskNames:
    """The names of the task runs whose lines are shown, read in one request per batch."""

    def __init__(self, read: ReadNames | None) -> None:
        self.read = read
        self.names: dict[UUID, str] = {}
        self.wanted: set[UUID] = set()
        self.reads_left = TASK_NAME_READS if read is not None else 0

    def want(self, task_run_id: UUID) -> None:
        if task_run_id not in self.names:
            self.wanted.add(task_run_id)

    def ready(self, task_run_id: UUID) -> bool:
        return task_run_id in self.names or self.reads_left <= 0

    def label(self, task_run_id: UUID) -> str:
        return self.names.get(task_run_id) or f"task {str(task_run_id)[:8]}"

    async def resolve(self) -> None:
        """Read the names wanted so far (one request); on failure, give up on names."""
        if not self.wanted or self.reads_left <= 0 or self.read is None:
            return
        ids, self.reads_left = sorted(self.wanted, key=str), self.reads_left - 1
        try:
            async with asyncio.timeout(TASK_NAME_READ_SECONDS):
                found = await self.read(ids)
        except (PipeError, TimeoutError) as exc:
            console.debug(f"Could not read the task runs' names; marking their lines by id ({exc})")
            self.reads_left = 0
            return
        for id_ in ids:
            self.names[id_] = found.get(id_) or self.label(id_)
            self.wanted.discard(id_)


def fold_traceback(message: str, shown: dict[str, str], when: str) -> str:
    """``message`` with a traceback already shown (same innermost frame, same exception) replaced
    by one line pointing at the first; a new one is remembered in ``shown`` as seen at ``when``."""
    lines = message.splitlines()
    if TRACEBACK_HEAD not in lines:
        return message
    head = lines.index(TRACEBACK_HEAD)
    block = [line for line in lines[head:] if line.strip()]
    frames = [line.strip() for line in block if line.lstrip().startswith('File "')]
    exception = block[-1].strip()
    key = f"{frames[-1] if frames else ''}|{exception}"
    if key in shown:
        return "\n".join([*lines[:head], f"(traceback of {exception} as shown at {shown[key]} above)"])
    if len(shown) < MAX_TRACEBACKS:
        shown[key] = when
    return message


@dataclass
class LogPrinter:
    """Prints each log line of one run once, whichever path it came by, in time order when given
    a timeline, task lines marked when given task names."""

    prefix: str = ""  # names the run on each line when the step follows several
    enabled: bool = True
    timeline: Timeline | None = None
    tasks: TaskNames | None = None
    seen: set[UUID] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    latest_timestamp: datetime | None = None
    finished_line_seen: bool = False
    flow_began: bool = False  # the flow's engine logged its first line: the pull steps are done
    shipping: bool = False  # a line of the flow process came: it ships its lines (its closing one too)
    last_step: str | None = None  # the deployment pull step last begun
    count: int = 0  # lines received
    tracebacks: dict[str, str] = field(default_factory=dict)

    def __call__(self, log: Log) -> None:
        if log.id is None or log.id in self.seen:
            return
        self.seen.add(log.id)
        self.count += 1
        self.last_seen = time.monotonic()
        if self.latest_timestamp is None or log.timestamp > self.latest_timestamp:
            self.latest_timestamp = log.timestamp
        task_run_id = getattr(log, "task_run_id", None)
        self.shipping |= getattr(log, "name", None) != WORKER_LOGGER
        if task_run_id is None:  # the flow run's own lines, not a task run's
            self.finished_line_seen |= log.message.startswith(FINISHED_PREFIX)
            self.flow_began |= log.message.startswith(BEGINNING_PREFIX)
            if log.message.startswith(DEPLOYMENT_STEP_PREFIX):
                self.last_step = log.message.removeprefix(DEPLOYMENT_STEP_PREFIX).strip()
        if not self.enabled:
            return
        if self.timeline is None:
            self.show(log)
            return
        if task_run_id is not None and self.tasks is not None:
            self.tasks.want(task_run_id)
            tasks = self.tasks
            self.timeline.add(log.timestamp, lambda: self.show(log), lambda: tasks.ready(task_run_id))
        else:
            self.timeline.add(log.timestamp, lambda: self.show(log))

    def show(self, log: Any) -> None:
        if not self.enabled:
            return  # display stopped while the line was held
        when = log.timestamp.astimezone().strftime("%H:%M:%S")
        message = fold_traceback(log.message, self.tracebacks, when)
        prefix = self.prefix
        task_run_id = getattr(log, "task_run_id", None)
        if task_run_id is not None and self.tasks is not None:
            prefix = f"{prefix} [{self.tasks.label(task_run_id)}]".lstrip()
        console.remote(log.timestamp, log.level, message, prefix)
