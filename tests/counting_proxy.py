"""A loopback TCP proxy that counts the HTTP requests passing through it (websocket traffic after
an upgrade is passed through uncounted, and counted as one websocket connection). Used by the
request-budget tests and by ``make bench``."""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field

REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+) HTTP/1\.[01]\r\n", re.M)


@dataclass
class Counts:
    requests: int = 0
    websockets: int = 0
    paths: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.requests, self.websockets, self.paths = 0, 0, []


class CountingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.counts = Counts()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        upgraded = False

        async def client_to_server() -> None:
            nonlocal upgraded
            while data := await reader.read(65536):
                if not upgraded:
                    for match in REQUEST_LINE.finditer(data):
                        if b"\r\nupgrade: websocket" in data.lower():
                            self.counts.websockets += 1
                            upgraded = True
                        else:
                            self.counts.requests += 1
                            self.counts.paths.append(match.group(2).decode(errors="replace"))
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(client_to_server(), server_to_client(), return_exceptions=True)
