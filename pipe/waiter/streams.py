"""The subscriber: the events and logs websockets, each kept connected by the waiter itself.

Connections drop. Prefect's own reconnects are off, so every drop is seen here: a :class:`Stream`
reconnects (bounded, with backoff) and says at every moment whether it is up, so the waiter knows
what a stream was sure to deliver and what it must read by request instead.

A websocket's first message carries the credential (``{"type": "auth", "token": ...}``), and the
``websockets`` client follows redirects to any host (it drops only the ``Authorization`` header), so
a redirect is never followed: the stream is given up at once, with one warning, and the waiter polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from pipe import console
from pipe.errors import PrefectError

Subscribe = Callable[[], AbstractAsyncContextManager[AsyncIterator[Any]]]

# How long one connect may take, how often to retry in a row, and the pauses between.
STREAM_CONNECT_TIMEOUT = 15.0
STREAM_RETRIES = 8
STREAM_BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
STREAM_MIN_UP = 1.0  # a stream that closes sooner than this after connecting counts as a failed connect
# A websocket's polite close waits 10 s for a silent server's answer: give it this long, then cut it.
STREAM_CLOSE_GRACE = 1.0


class RedirectRefused(PrefectError):
    """The server answered a websocket upgrade with a redirect, which is not followed."""

    def __init__(self, name: str, status: int, location: str) -> None:
        target = urlsplit(location).netloc or location
        super().__init__(
            f"The {name} websocket was redirected ({status}) to {target}; not following it, since the"
            " credential would go with it: reading by request instead",
            "point PREFECT_API_URL at the address the server answers on, not one that redirects",
        )


class Notices:
    """Warnings told once each, however often their cause recurs (both streams, every read)."""

    def __init__(self) -> None:
        self.told: set[str] = set()

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.told:
            self.told.add(key)
            console.warning(message)


def refuse_redirects(subscriber: Any, name: str) -> Any:
    """``subscriber`` (Prefect's events or logs subscriber) with redirects refused. Its websocket
    connection is Prefect's ``websockets`` ``connect``; without it the connect fails, which is safe:
    the waiter polls."""
    from websockets.exceptions import InvalidStatus

    def refuse(exc: Exception) -> Exception:
        if isinstance(exc, InvalidStatus) and 300 <= exc.response.status_code < 400:
            return RedirectRefused(name, exc.response.status_code, exc.response.headers.get("Location", ""))
        return exc

    subscriber._connect.process_redirect = refuse
    return subscriber


def flow_run_resource(flow_run_id: UUID) -> str:
    """The events' name for a flow run."""
    return f"prefect.flow-run.{flow_run_id}"


def events_subscription(flow_run_ids: Sequence[UUID]) -> Subscribe:
    """The flow-run events (state changes) of the given runs."""

    def subscribe() -> Any:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        event_filter = EventFilter(
            event=EventNameFilter(prefix=["prefect.flow-run."]),
            any_resource=EventAnyResourceFilter(id=[flow_run_resource(id_) for id_ in flow_run_ids]),
        )
        return refuse_redirects(get_events_subscriber(filter=event_filter, reconnection_attempts=0), "events")

    return subscribe


def logs_subscription(flow_run_ids: Sequence[UUID]) -> Subscribe:
    """The log lines of the given runs, from the moment of subscribing (the stream is live only)."""

    def subscribe() -> Any:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.logging.clients import get_logs_subscriber

        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(flow_run_ids)))
        return refuse_redirects(get_logs_subscriber(filter=log_filter, reconnection_attempts=0), "logs")

    return subscribe


class Stream:
    """One websocket, kept connected until the deadline; ``alive`` while it is connected."""

    def __init__(self, name: str, subscribe: Subscribe, deadline: float, notices: Notices | None = None) -> None:
        self.name = name
        self.subscribe = subscribe
        self.deadline = deadline  # time.monotonic() value
        self.notices = notices or Notices()
        self.alive = False
        self.connects = 0  # how often it came up: a change tells of a drop in between

    async def follow(
        self,
        on_up: Callable[[], Awaitable[None]],
        on_item: Callable[[Any], None],
        on_down: Callable[[], None],
    ) -> None:
        """Keep the stream connected: reconnect after a drop, give up after STREAM_RETRIES failed
        connects in a row (the waiter polls meanwhile and from then on), and at once after a
        redirect. ``on_up`` runs after each connect, ``on_down`` after each drop of a stream that was up."""
        failures = 0
        while failures <= STREAM_RETRIES and time.monotonic() < self.deadline:
            up_since: float | None = None
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(STREAM_CONNECT_TIMEOUT):
                        stream = await stack.enter_async_context(self.subscribe())
                    up_since = time.monotonic()
                    self.alive = True
                    self.connects += 1
                    await on_up()
                    async for item in stream:
                        on_item(item)
                console.debug(f"The {self.name} stream was closed by the server; reconnecting")
            except asyncio.CancelledError:
                raise
            except RedirectRefused as exc:
                self.notices.warn_once("redirect", str(exc))
                return
            except Exception as exc:
                console.debug(f"The {self.name} stream dropped ({type(exc).__name__}: {exc}); reconnecting")
            finally:
                if up_since is not None:
                    self.alive = False
                    on_down()
            lasted = time.monotonic() - up_since if up_since is not None else 0.0
            failures = 0 if lasted >= STREAM_MIN_UP else failures + 1
            if failures:
                await asyncio.sleep(STREAM_BACKOFF[min(failures, len(STREAM_BACKOFF)) - 1])
        console.debug(f"The {self.name} stream is unavailable; polling instead")


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the stream tasks and wait for them, at most STREAM_CLOSE_GRACE a round: a second
    cancel cuts a websocket close that waits for a server that no longer answers."""
    for _ in range(3):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=STREAM_CLOSE_GRACE)
