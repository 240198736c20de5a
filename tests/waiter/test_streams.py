"""The subscriber: reconnects after drops, counts quick closes as failed connects, gives up bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipe.waiter import streams
from pipe.waiter.streams import Stream


def test_a_stream_reconnects_after_drops_and_gives_up_after_failed_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "STREAM_BACKOFF", (0.0,))
    monkeypatch.setattr(streams, "STREAM_RETRIES", 2)
    connects: list[int] = []
    seen: list[Any] = []
    calls: list[str] = []

    @contextlib.asynccontextmanager
    async def subscribe() -> AsyncIterator[AsyncIterator[Any]]:
        connects.append(1)
        if len(connects) > 1:
            raise ConnectionError("refused")  # every reconnect fails

        async def items() -> AsyncIterator[Any]:
            yield "first"
            raise ConnectionError("dropped")

        yield items()

    stream = Stream("events", subscribe, deadline=time.monotonic() + 30)

    async def on_up() -> None:
        calls.append(f"up alive={stream.alive}")

    def on_down() -> None:
        calls.append(f"down alive={stream.alive}")

    asyncio.run(stream.follow(on_up, seen.append, on_down))
    assert seen == ["first"]
    assert calls == ["up alive=True", "down alive=False"]
    assert len(connects) == 1 + streams.STREAM_RETRIES  # the quick drop counts as the first failure
    assert not stream.alive


def test_stopping_cuts_tasks_that_ignore_one_cancel() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(60)  # a websocket close waiting for a silent server

    async def main() -> float:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        started = time.monotonic()
        await streams.stop([task])
        assert task.done()
        return time.monotonic() - started

    assert asyncio.run(main()) < 2 * streams.STREAM_CLOSE_GRACE + 0.5


def test_a_redirected_websocket_is_not_followed_and_the_credential_stays_home(caplog: Any) -> None:
    """A 307 on the upgrade would make the websockets client reconnect to the other host and send
    the auth message (the credential) there, on every reconnect. The stream gives up at once."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

    elsewhere: list[str] = []

    async def record(connection: ServerConnection) -> None:
        elsewhere.extend([str(message) async for message in connection])

    async def main() -> float:
        async with serve(record, "127.0.0.1", 0) as other:
            other_port = other.sockets[0].getsockname()[1]

            def redirect(_: ServerConnection, request: Request) -> Response:
                location = f"ws://127.0.0.1:{other_port}{request.path}"
                return Response(307, "Temporary Redirect", Headers({"Location": location}), b"")

            async with serve(record, "127.0.0.1", 0, process_request=redirect) as home:
                port = home.sockets[0].getsockname()[1]
                settings = {PREFECT_API_URL: f"http://127.0.0.1:{port}/api", PREFECT_API_AUTH_STRING: "user:s3cret"}
                started = time.monotonic()
                with temporary_settings(updates=settings):
                    for subscription in (streams.events_subscription, streams.logs_subscription):
                        stream = Stream("events", subscription([uuid.uuid4()]), time.monotonic() + 30, notices)
                        await stream.follow(no_op, lambda _: None, lambda: None)
                return time.monotonic() - started

    async def no_op() -> None:
        pass

    notices = streams.Notices()
    took = asyncio.run(main())
    assert elsewhere == []  # nothing, the auth message least of all, went to the other host
    assert took < 5  # given up at once, not after STREAM_RETRIES reconnects
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "redirected (307)" in warnings[0], warnings
