"""`make bench`, second part: the pipe against a Prefect server with Prefect's default log settings.

A self-hosted server streams no logs unless two settings are on (``PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED``
and ``PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED``): the logs websocket connects and stays silent,
so the pipe reads lines by request. Measured as the main comparison measures the streaming server:
the overhead over Prefect's own floor (exit minus the moment the run's closing line reached the
server) over short runs, and the HTTP requests of one 20-second run.
"""

from __future__ import annotations

import statistics
from typing import Any

from tests.support.prefect_server import start_server
from tests.support.proxy import CountingProxy

TOOL = "prefect-trigger, default server"


def measure() -> dict[str, float]:
    """Start a default-settings server and worker, run the pipe's rows, stop them."""
    from bench.__main__ import RUN_SECONDS, Tools, median, quick_lengths

    server = start_server(stream_logs=False)
    proxy = CountingProxy(server.port).start()
    try:
        tools = Tools(server, proxy)
        quick = [tools.measure(tools.pipe, [("sleepy/ci", {"seconds": s, "lines": 2})]) for s in quick_lengths()]
        long = [tools.measure(tools.pipe, [("sleepy/ci", {"seconds": RUN_SECONDS, "lines": 5})])]
        return {
            "latency": median(quick, "latency"),
            "floor": median(quick, "floor"),
            "overhead": overhead(quick),
            "requests_20s": median(long, "requests"),
            "websockets_20s": median(long, "websockets"),
        }
    finally:
        proxy.stop()
        server.stop()


def overhead(rows: list[dict[str, Any]]) -> float:
    """Median of each run's exit minus its floor (runs without both are left out)."""
    values = [row["latency"] - row["floor"] for row in rows if "latency" in row and "floor" in row]
    return statistics.median(values) if values else float("nan")


def report(default: dict[str, float], streaming: dict[str, float] | None = None) -> None:
    """One line for the default server, beside the streaming server's figures when given."""
    line = (
        f"{TOOL}: overhead {default['overhead']:.2f} s over the floor (latency {default['latency']:.2f} s,"
        f" floor {default['floor']:.2f} s), {default['requests_20s']:.0f} requests for a 20-second run"
    )
    if streaming is not None:
        line += f"; streaming server: overhead {overhead_of(streaming):.2f} s, {streaming['requests_20s']:.0f} requests"
    print(line)


def overhead_of(row: dict[str, float]) -> float:
    return row.get("overhead", row["latency"] - row["floor"])
