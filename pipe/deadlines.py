"""Total deadlines for blocking calls.

``requests`` (and hvac, google-auth and botocore on top of it) bound each read, not a whole answer: a
server that sends one byte every few seconds keeps a call going for ever. Blocking calls therefore run
in a daemon thread that the caller stops waiting for at the deadline. The thread is abandoned, not
joined: nothing at exit waits for it (``asyncio.to_thread`` threads are joined when ``asyncio.run``
ends, which once held a stopped step for 20 s), and the process ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pipe.errors import Stopped

T = TypeVar("T")
STOP_POLL_SECONDS = 0.1


class DeadlineExceeded(TimeoutError):
    """The call did not finish in time (it may still be running, abandoned, in its thread)."""


def call_within(seconds: float, call: Callable[[], T], what: str = "call") -> T:
    """``call()``, or :class:`DeadlineExceeded` once ``seconds`` have passed."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller as it is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"deadline: {what}", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        raise DeadlineExceeded(f"{what} did not finish within {seconds:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


async def in_background(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` in a daemon thread, awaited without blocking the event loop. Cancelling the await
    (a stopped step) returns at once; the thread is left to end with the process."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def run() -> None:
        value, error = None, None
        try:
            value = call(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for this answer any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name=f"background: {getattr(call, '__name__', 'call')}", daemon=True).start()
    return await future


def run_unless_stopped(coroutine: Coroutine[Any, Any, T], stop: threading.Event | None, doing: str) -> T:
    """``asyncio.run(coroutine)`` in a worker thread that has no event loop of its own, cancelled within a
    tenth of a second once ``stop`` is set (a stopped step must not wait for a call's budget)."""

    async def watched() -> T:
        task = asyncio.ensure_future(coroutine)
        while True:
            done, _ = await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)
            if done:
                return task.result()
            if stop is not None and stop.is_set():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise Stopped(f"The step was stopped while {doing}")

    return asyncio.run(watched())
