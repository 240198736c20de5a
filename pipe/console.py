"""Everything the pipe prints goes through here, masked and with remote text made safe.

The toolkit configures the root logger (colorlog, ``LEVEL: message``) and provides the ``✔``/``✖``
outcome lines users know from official pipes. This module adds what a pipe that talks to remote
systems needs: a filter that masks secrets in every record, quiet HTTP libraries (they log URLs,
which can carry credentials), and a distinct prefix for lines that come from the flow run.

The pipe's own lines embed remote text (state messages, run names), so every line is passed through
:mod:`pipe.remote_text` here, in one place: the ✔/✖ lines and log levels keep the toolkit's colours,
which are added around the message, and nothing inside a message can start a line of its own.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from bitbucket_pipes_toolkit import helpers as toolkit

from pipe.remote_text import lines, one_line
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
    logger.info(mask(one_line(message)))


def debug(message: str) -> None:
    logger.debug(mask(one_line(message)))


def warning(message: str) -> None:
    logger.warning(mask(one_line(message)))


def success(message: str) -> None:
    toolkit.success(mask(one_line(message)), do_exit=False)


def fail(message: str) -> None:
    toolkit.fail(mask(one_line(message)), do_exit=False)
    sys.stdout.flush()


def plain(message: str = "") -> None:
    """The pipe's own text block (summary, DRY_RUN's request): several lines, each made safe."""
    print(mask("\n".join(lines(message))), flush=True)


def remote(timestamp: datetime, level: int | str, message: str, prefix: str = "") -> None:
    """One log line of the flow run, marked as coming from Prefect; its own line breaks stay under the mark."""
    level_name = logging.getLevelName(level) if isinstance(level, int) else str(level)
    when = timestamp.astimezone().strftime("%H:%M:%S")
    lead = f"{one_line(prefix)} " if prefix else ""
    text = message.rstrip("\r\n")
    for i, line in enumerate(lines(text) if text else [""]):
        head = f"{lead}prefect │ {when} {one_line(level_name):<7}" if i == 0 else f"{lead}prefect │ {'':<16}"
        print(mask(f"{head} {line}"), flush=True)
