"""The loopback proxy core between a client (the pipe, the Prefect CLI or SDK) and the real Prefect
server of the tests, and the counting proxy built on it.

:class:`RelayProxy` listens on a loopback port and forwards to a server on 127.0.0.1 (nothing else).
HTTP/1.1 is parsed just enough to find request and response boundaries (``Content-Length`` and
chunked bodies), so keep-alive connections carry several requests and each one passes a hook; a
websocket upgrade becomes a raw two-way pipe once the server answers ``101``. Subclasses hook in:
:class:`CountingProxy` counts requests and websockets (the request-budget tests, ``make bench``);
``tests/faults/proxy.py`` injects seeded faults.

Bounded: it only ever connects to 127.0.0.1, every read and connect has a timeout, and it can stop
by itself after ``lifetime`` seconds and serve at most ``max_connections`` connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

UPSTREAM_HOST = "127.0.0.1"
HEAD_LIMIT = 64 * 1024  # bytes of request/response head
BODY_LIMIT = 64 * 1024 * 1024
UPSTREAM_TIMEOUT = 60.0  # one read from the server
CLIENT_IDLE_TIMEOUT = 120.0  # one read from the client between requests
PIPE_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Request:
    """What a hook sees of a request."""

    method: str
    path: str
    connection: int
    number: int  # within the connection
    websocket: bool


class Closed(Exception):
    """The peer closed the connection (or sent something that cannot be parsed)."""


class RelayProxy:
    """``with RelayProxy(upstream_port) as proxy: ... proxy.api_url``; subclasses override the hooks
    :meth:`accepted`, :meth:`connection`, :meth:`request` and :meth:`seen`."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = UPSTREAM_HOST,
        lifetime: float | None = None,
        max_connections: int | None = None,
    ) -> None:
        if upstream_host != UPSTREAM_HOST:
            raise ValueError(f"{type(self).__name__} only forwards to 127.0.0.1")
        self.upstream_port = upstream_port
        self.lifetime = lifetime
        self.max_connections = max_connections
        self.port = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._error: BaseException | None = None

    # -- life cycle --------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=self._thread_name(), daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError(f"the {type(self).__name__} did not start")
        if self._error is not None:
            raise RuntimeError(f"the {type(self).__name__} did not start") from self._error
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended by itself (lifetime)
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)

    def clock(self) -> float:
        """Seconds since the proxy was made."""
        return time.monotonic() - self._started

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_name(self) -> str:
        return type(self).__name__

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    def _on_loop_start(self) -> None:
        """Runs in the proxy's event loop before the first connection (a subclass makes its events)."""

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._on_loop_start()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=HEAD_LIMIT)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.lifetime)
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- hooks -------------------------------------------------------------------------------------

    def accepted(self) -> int:
        """A new connection; its number (from 1)."""
        with self._lock:
            self.connections += 1
            return self.connections

    async def connection(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: its requests, one by one, over one server connection."""
        up_reader, upstream = await self._upstream()
        await self._exchange(number, reader, writer, up_reader, upstream)

    async def request(
        self,
        connection: int,
        number: int,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
    ) -> bool:
        """One request, forwarded and answered. False when the connection is done."""
        request, body = await self.read_request(connection, number, head, reader)
        self.seen(request)
        upstream.write(head + body)
        await upstream.drain()
        if request.websocket:
            if switched(await self.handshake(writer, up_reader)):
                await _relay(reader, writer, up_reader, upstream)
            return False
        status, response = await read_response(up_reader, request.method)
        self.answered(request, body, status)
        writer.write(response)
        await writer.drain()
        return keeps_alive(response)

    def seen(self, request: Request) -> None:
        """Every request read from a client, before it goes on."""

    def answered(self, request: Request, body: bytes, status: int) -> None:
        """Every HTTP request (not a websocket's) with its body, once the server has answered it."""

    # -- one connection ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.accepted()
        self._writers.add(writer)
        try:
            if self.max_connections is not None and number > self.max_connections:
                return
            await self.connection(number, reader, writer)
        except (Closed, ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.close()  # a FIN (faults that reset have aborted it already)

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        up_reader, upstream = await asyncio.wait_for(
            asyncio.open_connection(UPSTREAM_HOST, self.upstream_port, limit=HEAD_LIMIT), timeout=10
        )
        self._writers.add(upstream)
        return up_reader, upstream

    def _drop_upstream(self, upstream: asyncio.StreamWriter) -> None:
        self._writers.discard(upstream)
        upstream.transport.close()

    async def _next_request(
        self, reader: asyncio.StreamReader, up_reader: asyncio.StreamReader
    ) -> tuple[bytes | None, bool]:
        """The next request head of the client, and whether the server closed the idle connection
        meanwhile. The client must see that close as it would without the proxy (a FIN), or it
        reuses a connection the server has dropped and a fault appears that nobody injected."""
        head_task = asyncio.ensure_future(read_head(reader, CLIENT_IDLE_TIMEOUT, eof_ok=True))
        closed_task = asyncio.ensure_future(up_reader.read(1))
        try:
            await asyncio.wait({head_task, closed_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed_task.cancel()
            if closed_task.done() and not head_task.done():
                head_task.cancel()
            await asyncio.gather(closed_task, return_exceptions=True)
        server_closed = closed_task.done() and not closed_task.cancelled()
        if not head_task.done() or head_task.cancelled():
            await asyncio.gather(head_task, return_exceptions=True)
            return None, server_closed
        return head_task.result(), server_closed

    async def _exchange(
        self,
        connection: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
    ) -> None:
        try:
            for number in range(10_000):
                head, server_closed = await self._next_request(reader, up_reader)
                if head is None:
                    return
                if server_closed:  # the request crossed the server's close: carry it on a new connection
                    self._drop_upstream(upstream)
                    up_reader, upstream = await self._upstream()
                if not await self.request(connection, number, head, reader, writer, up_reader, upstream):
                    return
        finally:
            self._drop_upstream(upstream)

    async def read_request(
        self, connection: int, number: int, head: bytes, reader: asyncio.StreamReader
    ) -> tuple[Request, bytes]:
        """The request of ``head`` and its body, read whole from the client."""
        method, path, headers = parse_request_head(head)
        body = await read_body(reader, headers, CLIENT_IDLE_TIMEOUT)
        websocket = headers.get("upgrade", "").lower() == "websocket"
        return Request(method, path, connection, number, websocket), body

    async def handshake(self, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader) -> bytes:
        """The server's answer to a websocket upgrade, passed on to the client."""
        head = await read_head(up_reader, UPSTREAM_TIMEOUT, eof_ok=False)
        assert head is not None
        writer.write(head)
        await writer.drain()
        return head


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
) -> None:
    """Both ways until either side closes."""
    pumps = [asyncio.create_task(pump(reader, upstream)), asyncio.create_task(pump(up_reader, writer))]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


# -- counting ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    path: str
    body: bytes
    status: int


@dataclass
class Counts:
    requests: int = 0
    websockets: int = 0
    paths: list[str] = field(default_factory=list)
    answers: list[Answered] = field(default_factory=list)

    def reset(self) -> None:
        self.requests, self.websockets, self.paths, self.answers = 0, 0, [], []

    def served(self) -> list[Answered]:
        """The requests the server served: not those answered 429 or 5xx (Prefect's server answers
        503 when SQLite is busy), which the client repeats, so that a request counts once however
        often it was tried."""
        return [answer for answer in self.answers if answer.status != 429 and answer.status < 500]


class CountingProxy(RelayProxy):
    """Counts the HTTP requests passing through (a websocket upgrade counts as one websocket, and its
    traffic after the upgrade is not counted)."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.counts = Counts()

    def seen(self, request: Request) -> None:
        with self._lock:
            if request.websocket:
                self.counts.websockets += 1
            else:
                self.counts.requests += 1
                self.counts.paths.append(request.path)

    def answered(self, request: Request, body: bytes, status: int) -> None:
        with self._lock:
            self.counts.answers.append(Answered(request.path, body, status))


# -- HTTP/1.1, just enough -------------------------------------------------------------------------


async def read_head(reader: asyncio.StreamReader, timeout: float, *, eof_ok: bool) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=timeout)
    except asyncio.IncompleteReadError as exc:
        if eof_ok and not exc.partial:
            return None
        raise Closed from exc


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The first line and the header fields (names in lower case)."""
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    first, fields = parse_head(head)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise Closed(f"not an HTTP/1.x request: {first[:80]!r}")
    return parts[0], parts[1], fields


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str], timeout: float) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await asyncio.wait_for(_read_chunked(reader), timeout=timeout)
    length = int(headers.get("content-length", "0") or 0)
    if length < 0 or length > BODY_LIMIT:
        raise Closed(f"body of {length} bytes")
    return await asyncio.wait_for(reader.readexactly(length), timeout=timeout) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    for _ in range(100_000):
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            for _ in range(100):  # trailers end with an empty line
                trailer = await reader.readuntil(b"\r\n")
                out += trailer
                if trailer == b"\r\n":
                    return bytes(out)
            raise Closed("too many trailers")
        if len(out) + size > BODY_LIMIT:
            raise Closed("chunked body too large")
        out += await reader.readexactly(size + 2)
    raise Closed("too many chunks")


async def read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, bytes]:
    """One whole response of the server (head and body), as bytes."""
    for _ in range(10):  # 1xx interim answers come before the real one
        head = await read_head(reader, UPSTREAM_TIMEOUT, eof_ok=False)
        assert head is not None
        first, fields = parse_head(head)
        status = int(first.split(" ")[1])
        if 100 <= status < 200 and status != 101:
            continue
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, head
        if "chunked" in fields.get("transfer-encoding", "").lower() or "content-length" in fields:
            return status, head + await read_body(reader, fields, UPSTREAM_TIMEOUT)
        body = await asyncio.wait_for(reader.read(BODY_LIMIT), timeout=UPSTREAM_TIMEOUT)  # until close
        return status, head + body
    raise Closed("too many interim answers")


def switched(head: bytes) -> bool:
    """The server accepted a websocket upgrade."""
    return head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101"))


def keeps_alive(response: bytes) -> bool:
    return b"connection: close" not in response.split(b"\r\n\r\n", 1)[0].lower()


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None] | None = None
) -> None:
    """Copy bytes one way until either side closes (cancelled at the latest when the proxy stops)."""
    while True:
        data = await reader.read(PIPE_CHUNK)
        if not data:
            return
        if count is not None:
            count(len(data))
        writer.write(data)
        await writer.drain()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
