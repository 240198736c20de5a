"""Sample flows the tests deploy to the real Prefect server.

Each one is small and says in its logs what it did, so the tests can check that the pipe streamed
every line and passed the commit metadata it was meant to pass.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import flow, get_run_logger, task


@task
def explode(reason: str) -> None:
    raise RuntimeError(reason)


@flow(name="greet")
def greet(
    name: str = "world",
    count: int = 2,
    commit_sha: str | None = None,
    branch: str | None = None,
    build_number: int | None = None,
    bitbucket: dict[str, Any] | None = None,
) -> str:
    logger = get_run_logger()
    for i in range(count):
        logger.info("hello %s #%d", name, i)
    logger.info("commit_sha=%s branch=%s build_number=%s", commit_sha, branch, build_number)
    logger.info("bitbucket repository=%s", (bitbucket or {}).get("repository"))
    logger.info("last line of greet")
    return f"hello {name}"


@flow(name="fail")
def fail(reason: str = "boom") -> None:
    get_run_logger().info("about to fail")
    explode(reason)


@flow(name="crash")
def crash() -> None:
    get_run_logger().info("about to crash")
    time.sleep(0.5)
    os._exit(3)


@flow(name="sleepy")
def sleepy(seconds: float = 30.0, lines: int = 0) -> None:
    logger = get_run_logger()
    start = time.monotonic()
    step = seconds / lines if lines else seconds
    for i in range(lines):
        logger.info("tick %d", i)
        time.sleep(step)
    time.sleep(max(0.0, seconds - (time.monotonic() - start)))
    logger.info("last line of sleepy")
