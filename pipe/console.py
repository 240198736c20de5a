"""Everything the pipe prints goes through here, masked.

The toolkit configures the root logger (colorlog, ``LEVEL: message``) and provides the ``✔``/``✖``
outcome lines users know from official pipes. This module adds what a pipe that talks to remote
systems needs: a filter that masks secrets in every record, quiet HTTP libraries (they log URLs,
which can carry credentials), and a distinct prefix for lines that come from the flow run.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from bitbucket_pipes_toolkit import helpers as toolkit

from pipe.secret import mask

logger = toolkit.get_logger()

# Libraries that log each request (with its URL) at INFO, or payloads at DEBUG.
_NOISY = ("httpx", "httpcore", "websockets", "urllib3", "botocore", "boto3", "hvac", "google", "prefect")


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        return True


def setup(debug: bool) -> None:
    """Route all logging through the toolkit's handler with secrets masked."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stdout)  # one stream, so log lines and prints keep their order
        if not any(isinstance(f, _MaskingFilter) for f in handler.filters):
            handler.addFilter(_MaskingFilter())
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def info(message: str) -> None:
    logger.info(mask(message))


def debug(message: str) -> None:
    logger.debug(mask(message))


def warning(message: str) -> None:
    logger.warning(mask(message))


def success(message: str) -> None:
    toolkit.success(mask(message), do_exit=False)


def fail(message: str) -> None:
    toolkit.fail(mask(message), do_exit=False)
    sys.stdout.flush()


def plain(message: str = "") -> None:
    print(mask(message), flush=True)


def remote(timestamp: datetime, level: int, message: str, prefix: str = "") -> None:
    """One log line of the flow run, marked as coming from Prefect."""
    level_name = logging.getLevelName(level) if isinstance(level, int) else str(level)
    when = timestamp.astimezone().strftime("%H:%M:%S")
    lead = f"{prefix} " if prefix else ""
    for i, line in enumerate(message.splitlines() or [""]):
        head = f"{lead}prefect │ {when} {level_name:<7}" if i == 0 else f"{lead}prefect │ {'':<16}"
        print(mask(f"{head} {line}"), flush=True)
