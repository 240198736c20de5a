"""The base of the HTTP stand-ins (Bitbucket's API, the identity providers' endpoints): a small
threaded HTTP server on a free loopback port that hands every request to :meth:`StandIn.respond`.

Each stand-in subclass *checks* what it receives and answers as the real service would; this base
only parses the request, records it, serves scripted answers first, and writes the answer back.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs


@dataclass
class Received:
    method: str
    path: str  # the request line's target, exactly as sent
    headers: dict[str, str]  # names in lower case: HTTP header names are case-insensitive
    body: bytes
    sent_headers: dict[str, str] = field(default_factory=dict)  # names as the client wrote them

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Answer:
    status: int
    body: str | bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Location, Retry-After


def json_answer(status: int, data: Any) -> Answer:
    return Answer(status, json.dumps(data))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that gave up (timeout tests) closes its socket; nothing to report
        super().handle_error(request, client_address)


class StandIn:
    """Serves from construction until :meth:`stop` (or the end of a ``with`` block).

    Every request is appended to ``received``; answers put in ``queued`` are served first (to script
    failures), then :meth:`answer`, which subclasses implement, decides.
    """

    protocol_version = "HTTP/1.0"

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.queued: list[Answer] = []
        self.server = _Server(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def respond(self, request: Received) -> Answer:
        self.received.append(request)
        return self.queued.pop(0) if self.queued else self.answer(request)

    def answer(self, request: Received) -> Answer:
        raise NotImplementedError

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = stand_in.protocol_version

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = dict(self.headers.items())
            headers = {k.lower(): v for k, v in sent.items()}
            request = Received(self.command, self.path, headers, self.rfile.read(length) if length else b"", sent)
            answer = stand_in.respond(request)
            body = answer.body.encode() if isinstance(answer.body, str) else answer.body
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_CONNECT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return None

    return Handler
