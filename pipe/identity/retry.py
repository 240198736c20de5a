"""Bounded retries for identity hops.

Transient failures (connection refused or reset, timeouts, throttling, 5xx, an identity provider that
AWS could not reach) are retried with jittered backoff; anything else is a definite answer and is
raised at once. Every attempt gets a timeout cut to what is left of the budget, so one hop never
takes much longer than ``budget`` seconds however the network misbehaves.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pipe.deadlines import DeadlineExceeded, call_within

T = TypeVar("T")

TRIES = 3
BUDGET_SECONDS = 18.0  # the whole hop, all attempts and pauses included
ATTEMPT_TIMEOUT = 10.0  # one request at most
_BACKOFF = (1.0, 2.5)  # pause before the 2nd and 3rd attempt (plus up to 25 % jitter)
_MIN_ATTEMPT = 1.0
_ATTEMPT_GRACE = 1.0  # past the attempt's own timeout, before it is abandoned

log = logging.getLogger("pipe.identity")

# Indirections the tests replace to run without waiting.
sleep: Callable[[float], None] = time.sleep
clock: Callable[[], float] = time.monotonic


class Redirected(Exception):
    """The server answered with a redirect. No identity hop follows one: the request carries the step
    token or a credential, which must go to the configured address and nowhere else."""

    def __init__(self, status: int, location: str | None) -> None:
        self.status = status
        self.location = location
        super().__init__(f"HTTP {status} redirect")

    @property
    def target(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.location or "")
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "another path"


def refuse_redirects(response: Any, *args: Any, **kwargs: Any) -> None:
    """A ``requests`` response hook: a 3xx answer ends the call before anything follows it."""
    if 300 <= response.status_code < 400:
        raise Redirected(response.status_code, response.headers.get("Location"))


def session() -> Any:
    """A ``requests`` session for identity hops: redirects are never followed, and no credential of the
    machine (``~/.netrc``) is added to a request."""
    import requests

    client = requests.Session()
    client.max_redirects = 0
    client.hooks["response"].append(refuse_redirects)
    client.trust_env = False
    return client


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
            # The libraries' timeouts bound each read; this bounds the whole attempt.
            return call_within(timeout + _ATTEMPT_GRACE, functools.partial(attempt, timeout), hop)
        except Exception as exc:
            if not isinstance(exc, DeadlineExceeded) and not is_transient(exc):
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


def hop(
    name: str,
    attempt: Callable[[float], T],
    is_transient: Callable[[BaseException], bool],
    *,
    reason: Callable[[BaseException], str],
    unreachable: str,
    fix: Callable[[Exception], str],
    refused: str = "failed",
) -> T:
    """One identity hop: :func:`call`, with both ways it can end badly as one :class:`IdentityError` line —
    ``"<hop> failed N times: <reason>"`` with the ``unreachable`` fix when the tries ran out, and
    ``"<hop> <refused>: <reason>"`` with ``fix(exc)`` when the other side said no."""
    from pipe.errors import IdentityError

    try:
        return call(name, attempt, is_transient)
    except Redirected as exc:
        raise IdentityError(
            f"{name} was answered with a redirect (HTTP {exc.status} to {exc.target}); the step token and "
            "credentials are never sent on to another address",
            "set the variable to the address that answers itself (the redirect's target, if you trust it)",
        ) from exc
    except GaveUp as exc:
        raise IdentityError(f"{name} failed {exc.attempts} times: {reason(exc.last)}", unreachable) from exc
    except Exception as exc:
        raise IdentityError(f"{name} {refused}: {reason(exc)}", fix(exc)) from exc
