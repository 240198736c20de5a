"""Every blocking call has a total deadline, even against a server that trickles its answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipe.bitbucket.api import BitbucketApi, BitbucketApiError, RetryPolicy
from pipe.deadlines import DeadlineExceeded, call_within, in_background
from pipe.identity import retry


def test_call_within_gives_up_at_the_deadline_without_waiting_for_the_call() -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call_within(0.3, lambda: time.sleep(30), "a stuck call")
    assert time.monotonic() - started < 1.0
    assert call_within(1.0, lambda: 42) == 42
    with pytest.raises(KeyError):
        call_within(1.0, lambda: {}["missing"])


def test_a_background_call_can_be_cancelled_at_once() -> None:
    async def main() -> float:
        task = asyncio.ensure_future(in_background(time.sleep, 30))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    started = time.monotonic()
    assert asyncio.run(main()) < 0.5
    assert time.monotonic() - started < 2.0  # asyncio.run's shutdown did not wait for the sleeping thread


def test_a_trickling_bitbucket_api_is_given_up_on_at_the_deadline(trickling: str) -> None:
    from pipe.bitbucket.auth import resolve

    auth = resolve({"BITBUCKET_ACCESS_TOKEN": "t0ken-for-the-trickle-test"}).auth
    assert auth is not None
    policy = RetryPolicy(attempts=1, connect_timeout=1.0, read_timeout=2.0, deadline=2.0)
    api = BitbucketApi.direct(f"{trickling}/2.0", auth, policy)
    started = time.monotonic()
    with pytest.raises(BitbucketApiError, match="timed out"):
        api.post("/repositories/a/b/commit/0f3c1e2/statuses/build", {})
    assert time.monotonic() - started < policy.deadline + 1.0


def test_a_trickling_identity_endpoint_is_given_up_on_within_the_hop_budget(trickling: str) -> None:
    import requests

    def attempt(timeout: float) -> str:
        return requests.post(f"{trickling}/token", timeout=timeout).text  # each byte arrives within timeout

    started = time.monotonic()
    with pytest.raises(retry.GaveUp) as caught:
        retry.call("the trickling server", attempt, lambda exc: False, budget=3.0)
    assert isinstance(caught.value.last, DeadlineExceeded)  # given up on, not refused: a transient failure
    assert time.monotonic() - started < 3.0 + 2.0


def test_a_stop_ends_a_worker_threads_calls_at_once() -> None:
    """The deploy's checks run their own event loop in a thread; a stopped step must not wait for them."""
    import threading

    from pipe.deadlines import run_unless_stopped
    from pipe.errors import Stopped

    async def slow() -> str:
        await asyncio.sleep(30)
        return "late"

    async def quick() -> str:
        return "done"

    assert run_unless_stopped(quick(), None, "checking") == "done"
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped, match="while checking the work pools"):
        run_unless_stopped(slow(), stop, "checking the work pools")
    assert time.monotonic() - started < 2
