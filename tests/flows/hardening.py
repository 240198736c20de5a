"""Sample flows for the waiter's hardening tests: a flow that logs faster than the logs stream
delivers (the server drops what exceeds 256 lines waiting for a subscriber)."""

from __future__ import annotations

from prefect import flow, get_run_logger


@flow(name="chatty")
def chatty(lines: int = 3000) -> None:
    logger = get_run_logger()
    for i in range(lines):
        logger.info("chatty line %d", i)
    logger.info("last line of chatty")
