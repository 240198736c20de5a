"""Bounded retries for identity hops.

Transient failures (connection refused or reset, timeouts, throttling, 5xx, an identity provider that
AWS could not reach) are retried with jittered backoff; anything else is a definite answer and is
raised at once. Every attempt gets a timeout cut to what is left of the budget, so one hop never
takes much longer than ``budget`` seconds however the network misbehaves.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TRIES = 3
BUDGET_SECONDS = 18.0  # the whole hop, all attempts and pauses included
ATTEMPT_TIMEOUT = 10.0  # one request at most
_BACKOFF = (1.0, 2.5)  # pause before the 2nd and 3rd attempt (plus up to 25 % jitter)
_MIN_ATTEMPT = 1.0

log = logging.getLogger("pipe.identity")

# Indirections the tests replace to run without waiting.
sleep: Callable[[float], None] = time.sleep
clock: Callable[[], float] = time.monotonic


class GaveUp(Exception):
    """Every attempt failed transiently. ``last`` is the final failure."""

    def __init__(self, hop: str, last: BaseException, attempts: int) -> None:
        self.hop = hop
        self.last = last
        self.attempts = attempts
        super().__init__(f"{hop}: {attempts} attempts failed")


def call(
    hop: str,
    attempt: Callable[[float], T],
    is_transient: Callable[[BaseException], bool],
    tries: int = TRIES,
    budget: float = BUDGET_SECONDS,
) -> T:
    """Run ``attempt(timeout)`` until it returns, fails definitely, or the tries/budget run out.

    A definite failure is re-raised as is; running out raises :class:`GaveUp` (from the last failure).
    """
    deadline = clock() + budget
    for number in range(1, tries + 1):
        timeout = max(_MIN_ATTEMPT, min(ATTEMPT_TIMEOUT, deadline - clock()))
        try:
            return attempt(timeout)
        except Exception as exc:
            if not is_transient(exc):
                raise
            pause = _BACKOFF[min(number, len(_BACKOFF)) - 1] * (1 + random.random() / 4)
            if number == tries or clock() + pause + _MIN_ATTEMPT > deadline:
                raise GaveUp(hop, exc, number) from exc
            # The exception's class only: library messages can carry URLs or bodies.
            log.info(
                "%s: transient failure (%s), retrying in %.1f s (attempt %d of %d)",
                hop,
                type(exc).__name__,
                pause,
                number + 1,
                tries,
            )
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
