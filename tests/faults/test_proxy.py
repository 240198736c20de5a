"""The fault proxy itself, against a small HTTP/1.1 server of its own (no Prefect): it forwards
keep-alive requests and websockets intact, injects exactly the faults its schedule says, draws the
same schedule from the same seed, caps streaks, goes dead on demand, and stops by itself."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.faults.proxy import Fault, FaultProxy, Schedule
from tests.support.proxy import Request


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, idle_timeout: float | None = None) -> None:
        handler = type("Handler", (_Handler,), {"timeout": idle_timeout})  # closes idle keep-alive connections
        super().__init__(("127.0.0.1", 0), handler)
        self.hits: list[tuple[str, str, bytes]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return None

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = b""
            for _ in range(1000):
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
            raise ValueError("too many chunks")
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _answer(self) -> None:
        body = self._body()
        self.server.hits.append((self.command, self.path, body))
        payload = json.dumps({"path": self.path, "received": len(body), "pad": "x" * 2000}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        if self.headers.get("Upgrade", "").lower() != "websocket":
            self._answer()
            return
        self.server.hits.append(("UPGRADE", self.path, b""))
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        self.connection.settimeout(10)
        for _ in range(1000):  # echo until the peer goes
            try:
                data = self.connection.recv(4096)
            except OSError:
                break
            if not data:
                break
            self.connection.sendall(data)
        self.close_connection = True


@contextlib.contextmanager
def serving(server: Upstream) -> Iterator[Upstream]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def upstream() -> Iterator[Upstream]:
    with serving(Upstream()) as server:
        yield server


def client(proxy: FaultProxy) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=5)


def always(fault: Fault, **kw: object) -> Schedule:
    return Schedule(seed=1, rate=1.0, faults=(fault,), max_consecutive=1000, **kw)  # type: ignore[arg-type]


def open_websocket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1024)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_forwards_keep_alive_requests_intact(upstream: Upstream) -> None:
    with FaultProxy(upstream.port, Schedule(seed=1)) as proxy, client(proxy) as http:
        for i in range(5):
            response = http.post(f"/api/item/{i}", content=b"y" * (1000 * i))
            assert response.status_code == 200
            assert response.json()["path"] == f"/api/item/{i}" and response.json()["received"] == 1000 * i
        chunked = http.post("/api/chunked", content=iter([b"a" * 10, b"b" * 20]))  # Transfer-Encoding: chunked
        assert chunked.json()["received"] == 30
    assert proxy.stats.connections == 1 and proxy.stats.requests == 6
    assert [h[2] for h in upstream.hits][:2] == [b"", b"y" * 1000]
    assert proxy.stats.total_faults == 0


def test_the_servers_idle_close_reaches_the_client() -> None:
    """The server closes an idle keep-alive connection: the client must see it (and open a new one)
    rather than send its next request into a connection nobody forwards."""
    with (
        serving(Upstream(idle_timeout=0.3)) as upstream,
        FaultProxy(upstream.port, Schedule(seed=1)) as proxy,
        httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=5) as http,  # no retries of its own
    ):
        assert http.get("/api/a").status_code == 200
        time.sleep(1.0)
        assert http.get("/api/b").status_code == 200
    assert [h[1] for h in upstream.hits] == ["/api/a", "/api/b"]
    assert proxy.stats.connections == 2 and proxy.stats.total_faults == 0


@pytest.mark.parametrize(("fault", "code"), [(Fault.TOO_MANY, 429), (Fault.BAD_GATEWAY, 502), (Fault.UNAVAILABLE, 503)])
def test_answers_in_the_servers_place(upstream: Upstream, fault: Fault, code: int) -> None:
    with FaultProxy(upstream.port, always(fault)) as proxy, client(proxy) as http:
        first = http.get("/api/x")
        second = http.post("/api/y", json={"a": 1})  # the connection stays usable: the body was consumed
    assert first.status_code == code and second.status_code == code
    if code in (429, 503):
        assert first.headers["Retry-After"] == "1"
    assert upstream.hits == []  # never forwarded
    assert proxy.stats.faults[fault] == 2 and proxy.stats.connections == 1


def test_lost_answer_reaches_the_server_but_not_the_client(upstream: Upstream) -> None:
    with (
        FaultProxy(upstream.port, always(Fault.LOST_ANSWER)) as proxy,
        client(proxy) as http,
        pytest.raises(httpx.TransportError),
    ):
        http.post("/api/create", json={"idempotency_key": "k"})
    assert upstream.hits == [("POST", "/api/create", b'{"idempotency_key":"k"}')]
    assert proxy.stats.faults[Fault.LOST_ANSWER] == 1


def test_drop_mid_response_sends_part_of_the_answer(upstream: Upstream) -> None:
    with (
        FaultProxy(upstream.port, always(Fault.DROP_MID_RESPONSE)) as proxy,
        client(proxy) as http,
        pytest.raises(httpx.TransportError),
    ):
        http.get("/api/long")
    assert len(upstream.hits) == 1
    [event] = [e for e in proxy.stats.events if "cut at" in e.what]
    cut, total = event.what.split("cut at ")[1].split(" bytes")[0].split("/")
    assert 0 < int(cut) < int(total)


def test_reset_never_forwards(upstream: Upstream) -> None:
    with (
        FaultProxy(upstream.port, always(Fault.RESET)) as proxy,
        client(proxy) as http,
        pytest.raises(httpx.TransportError),
    ):
        http.get("/api/x")
    assert upstream.hits == [] and proxy.stats.faults[Fault.RESET] == 1


def test_streaks_are_capped_below_the_clients_retries(upstream: Upstream) -> None:
    schedule = Schedule(seed=1, rate=1.0, faults=(Fault.BAD_GATEWAY,), max_consecutive=3)
    with FaultProxy(upstream.port, schedule) as proxy, client(proxy) as http:
        codes = [http.get("/api/same").status_code for _ in range(8)]
        other = http.get("/api/other").status_code
    assert codes == [502, 502, 502, 200, 502, 502, 502, 200]
    assert other == 502  # the cap counts per method and path
    assert proxy.stats.faults[Fault.BAD_GATEWAY] == 7


def test_the_same_seed_draws_the_same_schedule() -> None:
    def draws(seed: int) -> list[object]:
        schedule = Schedule(seed=seed, rate=0.3, websocket_drop_rate=0.5)
        out: list[object] = []
        for conn in range(1, 30):
            out.append(schedule.on_connect(conn))
            out.append(schedule.websocket_cut(conn))
            out += [schedule.on_request(Request("GET", "/api/x", conn, n, False)) for n in range(5)]
        return out

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    faults = [d for d in draws(7) if isinstance(d, Fault)]
    assert 0.15 < len(faults) / (29 * 6) < 0.45  # about the rate asked for
    assert len(set(faults)) >= 5  # a mix of kinds


def test_a_dead_server_accepts_and_never_answers(upstream: Upstream) -> None:
    with (
        FaultProxy(upstream.port, Schedule(seed=1, dead_from_start=True)) as proxy,
        httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=1) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get("/api/x")
    assert upstream.hits == [] and proxy.stats.faults[Fault.STALL] == 1


def test_websockets_pass_through_and_go_silent_when_dead(upstream: Upstream) -> None:
    with FaultProxy(upstream.port, Schedule(seed=1)) as proxy:
        sock = open_websocket(proxy.port)
        with sock:
            sock.sendall(b"frame-1")
            assert sock.recv(100) == b"frame-1"
            proxy.go_dead()
            time.sleep(0.2)
            sock.sendall(b"frame-2")
            sock.settimeout(1.0)
            with pytest.raises(TimeoutError):
                sock.recv(100)
    assert proxy.stats.websockets == 1 and proxy.stats.faults[Fault.STALL] == 1
    assert proxy.stats.websocket_bytes["/ws"] == len(b"frame-1")  # echoed before it went dead


def test_websockets_are_cut_on_schedule(upstream: Upstream) -> None:
    schedule = Schedule(seed=1, websocket_drop_rate=1.0, websocket_drop_after=(0.3, 0.3))
    with FaultProxy(upstream.port, schedule) as proxy:
        sock = open_websocket(proxy.port)
        started = time.monotonic()
        with sock:
            sock.sendall(b"frame")
            assert sock.recv(100) == b"frame"
            sock.settimeout(5)
            try:
                closed = sock.recv(100) == b""
            except ConnectionResetError:
                closed = True
        took = time.monotonic() - started
    assert closed and 0.2 < took < 2.0, took
    assert proxy.stats.faults[Fault.DROP_MID_WEBSOCKET] == 1


def test_websocket_outage_refuses_handshakes(upstream: Upstream) -> None:
    schedule = Schedule(seed=1, websocket_outage=(0.0, 60.0))
    with FaultProxy(upstream.port, schedule) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 503")
        with client(proxy) as http:
            assert http.get("/api/x").status_code == 200  # plain HTTP passes
    assert upstream.hits == [("GET", "/api/x", b"")]


def test_only_loopback_upstreams() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        FaultProxy(80, Schedule(seed=1), upstream_host="10.0.0.1")


def test_stops_by_itself(upstream: Upstream) -> None:
    proxy = FaultProxy(upstream.port, Schedule(seed=1), lifetime=0.5).start()
    port = proxy.port
    deadline = time.monotonic() + 5
    while proxy._thread is not None and proxy._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy._thread is not None and not proxy._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    proxy.stop()  # harmless afterwards
