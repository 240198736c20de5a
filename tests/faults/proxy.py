"""A fault-injecting TCP proxy between the pipe and the real Prefect server of the tests.

It listens on a loopback port and forwards to the server on 127.0.0.1 (nothing else), following a
seeded schedule: connection resets, connections dropped mid-response, answers lost after the server
acted on the request, 429 (``Retry-After: 1``)/502/503 answered in the server's place, websockets
dropped mid-stream, and a "dead server" mode that accepts and never answers.

It is built on the relaying core of ``tests/support/proxy.py``: keep-alive connections carry
several requests and each one gets its own draw; a websocket upgrade becomes a raw two-way pipe once
the server answers ``101``.

The schedule is a function of ``(seed, connection number, request number)``: the same seed gives the
same draws, although which of the pipe's concurrent users (the HTTP client, the events and the logs
websockets) gets which connection number depends on timing. Consecutive HTTP faults are capped below
the client's retry count, so a random schedule never makes a single request fail for good; targeted
faults (the lost create answer, the dead server) say exactly when they strike.

Bounded: it only ever connects to 127.0.0.1, stops by itself after ``lifetime`` seconds, serves at
most ``max_connections`` connections, and every read and connect has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from tests.support.proxy import UPSTREAM_HOST, RelayProxy, Request, keeps_alive, pump, read_response, reset, switched


class Fault(StrEnum):
    RESET = "reset"  # a new connection reset (RST) before its first request is forwarded
    RESET_REQUEST = "reset_request"  # request read, connection reset instead of forwarding it
    LOST_ANSWER = (
        "lost_answer"  # request forwarded and answered by the server; the answer is dropped with the connection
    )
    DROP_MID_RESPONSE = "drop_mid_response"  # part of the server's answer sent, then the connection closed
    TOO_MANY = "429"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    DROP_MID_WEBSOCKET = "drop_mid_websocket"  # an open websocket cut at TCP level
    STALL = "stall"  # dead server: accepted or read, never answered


HTTP_FAULTS = (
    Fault.RESET_REQUEST,
    Fault.LOST_ANSWER,
    Fault.DROP_MID_RESPONSE,
    Fault.TOO_MANY,
    Fault.BAD_GATEWAY,
    Fault.UNAVAILABLE,
)
ANSWERS = {
    Fault.TOO_MANY: (429, "Too Many Requests", {"Retry-After": "1"}),
    Fault.BAD_GATEWAY: (502, "Bad Gateway", {}),
    Fault.UNAVAILABLE: (503, "Service Unavailable", {"Retry-After": "1"}),
}


@dataclass
class Schedule:
    """Which faults to inject, drawn from ``seed``.

    ``rate`` is the chance that a request (or a new connection, for resets) gets a fault, picked
    from ``faults``; ``websocket_drop_rate`` the chance that an open websocket is cut after a delay
    drawn from ``websocket_drop_after``. ``lose_answer`` and ``dead_after`` are targeted: the first
    ``lose_answer_times`` requests matching ``lose_answer`` lose their answer, and once a request
    matching ``dead_after`` has been answered with success the server goes dead (``dead_from_start`` at once).
    """

    seed: int
    rate: float = 0.0
    faults: tuple[Fault, ...] = (Fault.RESET, *HTTP_FAULTS)
    websocket_drop_rate: float = 0.0
    websocket_drop_after: tuple[float, float] = (0.3, 4.0)
    max_consecutive: int = 3  # below the client's 4 retries: random faults never exhaust them
    lose_answer: Callable[[Request], bool] | None = None
    lose_answer_times: int = 1
    dead_after: Callable[[Request], bool] | None = None
    dead_from_start: bool = False
    # (start, end) seconds after the proxy started: every websocket is cut at the start and, until
    # the end, handshakes are refused with 503 ("refuse") or held and then forwarded ("hold": the
    # client reconnects, late). HTTP requests pass.
    websocket_outage: tuple[float, float] | None = None
    websocket_outage_mode: str = "refuse"
    # The window counts from when a request matching this was answered (2xx) instead.
    websocket_outage_from: Callable[[Request], bool] | None = None

    def _rng(self, *key: object) -> random.Random:
        return random.Random("/".join(str(k) for k in (self.seed, *key)))

    def on_connect(self, connection: int) -> Fault | None:
        if Fault.RESET not in self.faults:
            return None
        return Fault.RESET if self._rng(connection, "accept").random() < self.rate else None

    def on_request(self, request: Request) -> Fault | None:
        rng = self._rng(request.connection, request.number)
        if rng.random() >= self.rate:
            return None
        choices = [f for f in self.faults if f in HTTP_FAULTS]
        if request.websocket:  # a websocket handshake has no answer worth losing: refuse or reset it
            choices = [f for f in choices if f in (Fault.RESET_REQUEST, Fault.TOO_MANY, Fault.UNAVAILABLE)]
        return rng.choice(choices) if choices else None

    def websocket_cut(self, connection: int) -> float | None:
        rng = self._rng(connection, "websocket")
        if rng.random() >= self.websocket_drop_rate:
            return None
        return rng.uniform(*self.websocket_drop_after)


@dataclass
class Event:
    at: float
    connection: int
    request: int
    what: str


@dataclass
class Stats:
    connections: int = 0
    requests: int = 0  # requests seen (forwarded or answered in the server's place)
    websockets: int = 0
    websocket_bytes: Counter[str] = field(default_factory=Counter)  # from the server, by path, after the 101
    server_errors: int = 0  # 429/5xx answered by the real server itself (it is busy), not injected
    faults: Counter[str] = field(default_factory=Counter)
    events: list[Event] = field(default_factory=list)  # the first few hundred, for a failing test's message

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())


class FaultProxy(RelayProxy):
    """``with FaultProxy(upstream_port, Schedule(seed=1, rate=0.2)) as proxy: ... proxy.api_url``."""

    def __init__(
        self,
        upstream_port: int,
        schedule: Schedule,
        *,
        upstream_host: str = UPSTREAM_HOST,
        lifetime: float = 600.0,
        max_connections: int = 5000,
    ) -> None:
        super().__init__(upstream_port, upstream_host=upstream_host, lifetime=lifetime, max_connections=max_connections)
        self.schedule = schedule
        self.stats = Stats()
        self._streak: Counter[str] = Counter()
        self._lost_answers = 0
        self._dead = schedule.dead_from_start
        self._outage_anchor: float | None = None if schedule.websocket_outage_from else self._started
        self._dead_event: asyncio.Event | None = None

    # -- life cycle --------------------------------------------------------------------------------

    @property
    def dead(self) -> bool:
        return self._dead

    def go_dead(self) -> None:
        """From now on nothing is answered or forwarded (connections stay open, silent)."""
        loop, event = self._loop, self._dead_event
        self._dead = True
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def describe(self) -> str:
        faults = ", ".join(f"{k}={v}" for k, v in sorted(self.stats.faults.items())) or "none"
        lines = [
            f"seed {self.schedule.seed}: {self.stats.connections} connections, {self.stats.requests} requests, "
            f"{self.stats.websockets} websockets, faults: {faults}, server's own 429/5xx: {self.stats.server_errors}"
        ]
        lines += [f"  {e.at:7.2f}s conn {e.connection} req {e.request}: {e.what}" for e in self.stats.events[:300]]
        return "\n".join(lines)

    def _thread_name(self) -> str:
        return f"fault-proxy-{self.schedule.seed}"

    def _on_loop_start(self) -> None:
        self._dead_event = asyncio.Event()
        if self._dead:
            self._dead_event.set()

    # -- bookkeeping -------------------------------------------------------------------------------

    def _note(self, connection: int, request: int, what: str, fault: Fault | None = None) -> None:
        with self._lock:
            if fault is not None:
                self.stats.faults[fault.value] += 1
            if len(self.stats.events) < 1000:
                self.stats.events.append(Event(time.monotonic() - self._started, connection, request, what))

    def _allow(self, request: Request, fault: Fault | None) -> Fault | None:
        """Cap random faults: at most ``max_consecutive`` in a row for the same method and path
        (a retry repeats both), so the client's retries always get through in the end."""
        key = f"{request.method} {request.path.split('?', 1)[0]}"
        with self._lock:
            if fault is None:
                return None
            if self._streak[key] >= self.schedule.max_consecutive:
                return None
            self._streak[key] += 1
            return fault

    def _answered(self, request: Request, status: int) -> None:
        """A 429/5xx of the real server costs the client a retry too: it extends the streak."""
        key = f"{request.method} {request.path.split('?', 1)[0]}"
        with self._lock:
            if status == 429 or status >= 500:
                self._streak[key] += 1
                self.stats.server_errors += 1
            else:
                self._streak.pop(key, None)

    # -- the hooks of the relaying core ------------------------------------------------------------

    def accepted(self) -> int:
        number = super().accepted()
        with self._lock:
            self.stats.connections = number
        return number

    async def connection(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._dead:
            self._note(number, 0, "accepted while dead: never answered", Fault.STALL)
            await self._stall()
            return
        await super().connection(number, reader, writer)

    async def _stall(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

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
        """One request: answered, forwarded or faulted. False when the connection is done."""
        request, body = await self.read_request(connection, number, head, reader)
        method, path, websocket = request.method, request.path, request.websocket
        with self._lock:
            self.stats.requests += 1
        if self._dead:
            self._note(connection, number, f"{method} {path}: dead, never answered", Fault.STALL)
            await self._stall()
            return False
        fault = self._targeted(request)
        if websocket and self._in_outage():
            if self.schedule.websocket_outage_mode == "refuse":
                fault = Fault.UNAVAILABLE
            else:
                held = self._outage_left()
                self._note(connection, number, f"{method} {path}: websocket handshake held {held:.1f}s")
                await asyncio.sleep(held)
        if fault is None and number == 0:
            fault = self._allow(request, self.schedule.on_connect(connection))
        if fault is None:
            fault = self._allow(request, self.schedule.on_request(request))
        if fault is Fault.RESET:
            self._note(connection, number, f"{method} {path}: new connection reset before forwarding", fault)
            reset(writer)
            return False
        if fault in ANSWERS:
            code, reason, extra = ANSWERS[fault]
            self._note(connection, number, f"{method} {path}: answered {code}", fault)
            writer.write(_answer(code, reason, extra))
            await writer.drain()
            return True
        if fault is Fault.RESET_REQUEST:
            self._note(connection, number, f"{method} {path}: reset instead of forwarding", fault)
            reset(writer)
            return False
        upstream.write(head + body)
        await upstream.drain()
        if websocket:
            await self._websocket(connection, number, path.split("?", 1)[0], reader, writer, up_reader, upstream)
            return False
        sent = time.monotonic()
        status, response = await read_response(up_reader, method)
        took = f"{time.monotonic() - sent:.1f}s"
        if fault is Fault.LOST_ANSWER:
            self._note(
                connection, number, f"{method} {path}: server answered {status} after {took}, answer lost", fault
            )
            writer.transport.close()
            return False
        if fault is Fault.DROP_MID_RESPONSE:
            cut = random.Random(f"{self.schedule.seed}/{connection}/{number}/cut").randrange(1, len(response))
            self._note(connection, number, f"{method} {path}: answer cut at {cut}/{len(response)} bytes", fault)
            writer.write(response[:cut])
            await writer.drain()
            writer.transport.close()
            return False
        self._note(connection, number, f"{method} {path}: {status} after {took}")
        self._answered(request, status)
        if self.dead:  # the server died while this request was in flight (go_dead() from another task)
            await self._stall()
            return False
        writer.write(response)
        await writer.drain()
        anchor = self.schedule.websocket_outage_from
        if 200 <= status < 300 and anchor is not None and self._outage_anchor is None and anchor(request):
            self._outage_anchor = time.monotonic()
            self._note(connection, number, "the websocket outage clock starts")
        if 200 <= status < 300 and self.schedule.dead_after is not None and self.schedule.dead_after(request):
            self._note(connection, number, "the server goes dead from here on")
            self.go_dead()
        return keeps_alive(response)

    def _outage_clock(self) -> float | None:
        """Seconds into the outage's time base (None: not started, or no outage)."""
        if self.schedule.websocket_outage is None or self._outage_anchor is None:
            return None
        return time.monotonic() - self._outage_anchor

    def _in_outage(self) -> bool:
        now, window = self._outage_clock(), self.schedule.websocket_outage
        return now is not None and window is not None and window[0] <= now < window[1]

    def _outage_left(self) -> float:
        now, window = self._outage_clock(), self.schedule.websocket_outage
        return max(0.0, window[1] - now) if now is not None and window is not None else 0.0

    def _until_outage(self) -> float | None:
        now, window = self._outage_clock(), self.schedule.websocket_outage
        if now is None or window is None or now >= window[0]:
            return None
        return window[0] - now

    def _targeted(self, request: Request) -> Fault | None:
        rule = self.schedule.lose_answer
        if rule is None or not rule(request):
            return None
        with self._lock:
            if self._lost_answers >= self.schedule.lose_answer_times:
                return None
            self._lost_answers += 1
            self._streak[f"{request.method} {request.path.split('?', 1)[0]}"] += 1
        return Fault.LOST_ANSWER

    async def _websocket(
        self,
        connection: int,
        number: int,
        path: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
    ) -> None:
        head = await self.handshake(writer, up_reader)
        if not switched(head):
            self._note(connection, number, f"websocket refused by the server: {head.split(b' ', 2)[1].decode()}")
            return
        with self._lock:
            self.stats.websockets += 1
        cut = self.schedule.websocket_cut(connection)
        outage = self._until_outage()
        if outage is not None and (cut is None or outage < cut):
            cut = outage
        assert self._dead_event is not None

        def count(size: int) -> None:
            with self._lock:
                self.stats.websocket_bytes[path] += size

        pumps = [
            asyncio.create_task(pump(reader, upstream)),
            asyncio.create_task(pump(up_reader, writer, count)),
            asyncio.create_task(self._dead_event.wait()),
        ]
        try:
            done, _ = await asyncio.wait(pumps, timeout=cut, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                self._note(connection, number, f"websocket cut after {cut:.1f}s", Fault.DROP_MID_WEBSOCKET)
                reset(writer)
            elif pumps[2] in done:
                self._note(connection, number, "websocket silenced: dead server", Fault.STALL)
                for task in pumps[:2]:
                    task.cancel()
                await self._stall()
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


def _answer(code: int, reason: str, extra: dict[str, str]) -> bytes:
    body = f'{{"detail": "{reason} (injected by the fault proxy)"}}'.encode()
    lines = [f"HTTP/1.1 {code} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
