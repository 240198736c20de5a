"""`make bench`, gateway section: what the identity-aware gateway costs in front of a real Prefect server.

* added latency of a small proxied GET (``/api/health``): p50 and p99 through the gateway (one uvicorn
  worker, bearer session token) minus the same percentiles direct (HTTP Basic), sequential requests on
  kept-alive connections;
* requests per second of one gateway worker (concurrent clients in this process: the load generator
  shares the machine's cores with the gateway and the server);
* the pipe's detection latency (exit minus the run's end) through the gateway vs direct.

Targets: added p50 ≤ 2 ms, p99 ≤ 10 ms; detection latency within 0.1 s of direct.
Run alone with ``python -m bench.gateway`` (starts its own server).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.conftest import LoopbackIssuer, policy_document, session_token, start_gateway
from tests.support.prefect_server import PrefectServer, start_server

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "2000"))
LOAD_SECONDS = 5.0
CONCURRENCY = 16
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timings(
    direct: tuple[str, dict[str, str]], via: tuple[str, dict[str, str]], count: int
) -> tuple[list[float], list[float]]:
    """Round-trip times (ms) of ``count`` GETs each, direct and through the gateway, interleaved so that
    both see the same machine load."""
    out: tuple[list[float], list[float]] = ([], [])
    with httpx.Client(timeout=10) as client:
        for _ in range(50):  # warm-up: connections, the gateway's token cache
            for url, headers in (direct, via):
                client.get(url, headers=headers).raise_for_status()
        for _ in range(count):
            for (url, headers), into in zip((direct, via), out, strict=True):
                start = time.perf_counter()
                client.get(url, headers=headers).raise_for_status()
                into.append((time.perf_counter() - start) * 1000)
    return out


async def throughput(url: str, headers: dict[str, str]) -> float:
    done = 0
    stop = time.monotonic() + LOAD_SECONDS
    async with httpx.AsyncClient(
        headers=headers, timeout=10, limits=httpx.Limits(max_connections=CONCURRENCY)
    ) as client:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                (await client.get(url)).raise_for_status()
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.monotonic() - start)


def pipe_latency(server: PrefectServer, env: dict[str, str], seconds: float) -> tuple[float, float] | None:
    """The pipe's exit after the run's end, and after its closing log line reached the server (the floor
    of a tool that shows every line: the engine ships it 0–1 s after the end, which is most of the noise)."""
    from bench.__main__ import closing_line_arrival, latest_run

    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    step = {
        "BITBUCKET_PIPELINE_UUID": "{" + os.urandom(8).hex() + "}",
        "BITBUCKET_STEP_UUID": "{" + os.urandom(8).hex() + "}",
        "DEPLOYMENT": "sleepy/ci",
        "PARAMETERS": json.dumps({"seconds": seconds, "lines": 2}),
        "REPORT": "false",
        "PREFECT_HOME": tempfile.mkdtemp(prefix="bench-gw-"),
    }
    from tests.support.pipe import BITBUCKET_ENV

    proc = subprocess.run(
        [sys.executable, "-m", "pipe"],
        env={**base, **BITBUCKET_ENV, **step, **env},
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    exited = time.time()
    if proc.returncode != 0:
        print(proc.stdout.decode()[-2000:], file=sys.stderr)
        return None
    run = latest_run(server, "sleepy/ci")
    arrival = closing_line_arrival(server, run.id)
    if run.end_time is None or arrival is None:
        return None
    return exited - run.end_time.timestamp(), exited - arrival.timestamp()


def run(server: PrefectServer) -> dict[str, float]:
    issuer = LoopbackIssuer()
    directory = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    gateway = start_gateway(policy_document(issuer, server.api_url), directory)
    try:
        session = session_token(gateway, issuer.token())
        basic = base64.b64encode(server.auth_string.encode()).decode()
        direct_auth = {"Authorization": f"Basic {basic}"}
        via_auth = {"Authorization": f"Bearer {session}"}
        direct, via = timings(
            (f"{server.api_url}/health", direct_auth), (f"{gateway.url}/api/health", via_auth), REQUESTS
        )
        rps = asyncio.run(throughput(f"{gateway.url}/api/health", via_auth))
        rps_direct = asyncio.run(throughput(f"{server.api_url}/health", direct_auth))

        step_token = issuer.token()
        through = {
            "PREFECT_API_URL": f"{gateway.url}/api",
            "TOKEN_EXCHANGE_URL": f"{gateway.url}/token",
            "BITBUCKET_STEP_OIDC_TOKEN": step_token,
            "PREFECT_CLIENT_CUSTOM_HEADERS": json.dumps({"Authorization": f"Bearer {step_token}"}),
        }
        plain = {"PREFECT_API_URL": server.api_url, "PREFECT_API_AUTH_STRING": server.auth_string}
        lengths = [round(1 + i * (1 + 1 / REPEATS), 2) for i in range(REPEATS)]
        latency_via: list[tuple[float, float]] = []
        latency_direct: list[tuple[float, float]] = []
        for seconds in lengths:  # interleaved, so both see the same machine load
            for env, into in ((plain, latency_direct), (through, latency_via)):
                value = pipe_latency(server, env, seconds)
                if value is not None:
                    into.append(value)
        results = {
            "direct_p50_ms": percentile(direct, 0.50),
            "direct_p99_ms": percentile(direct, 0.99),
            "via_p50_ms": percentile(via, 0.50),
            "via_p99_ms": percentile(via, 0.99),
            "added_p50_ms": percentile(via, 0.50) - percentile(direct, 0.50),
            "added_p99_ms": percentile(via, 0.99) - percentile(direct, 0.99),
            "rps_one_worker": rps,
            "rps_direct": rps_direct,
            "detection_direct_s": median([end for end, _ in latency_direct]),
            "detection_via_s": median([end for end, _ in latency_via]),
            "beyond_floor_direct_s": median([line for _, line in latency_direct]),
            "beyond_floor_via_s": median([line for _, line in latency_via]),
        }
        report(results)
        return results
    finally:
        gateway.stop()
        issuer.stop()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(r: dict[str, Any]) -> None:
    print("\nGateway (one uvicorn worker) in front of the same Prefect server:")
    print(
        f"  small GET /api/health, {REQUESTS} sequential each, interleaved: direct p50 {r['direct_p50_ms']:.2f} ms p99"
        f" {r['direct_p99_ms']:.2f} ms; through the gateway p50 {r['via_p50_ms']:.2f} ms p99 {r['via_p99_ms']:.2f} ms"
    )
    print(
        f"  added by the gateway: p50 {r['added_p50_ms']:.2f} ms (target ≤ 2), p99 {r['added_p99_ms']:.2f} ms (target ≤ 10)"
    )
    print(
        f"  requests per second, {CONCURRENCY} concurrent clients: one gateway worker {r['rps_one_worker']:.0f}"
        f" (the server direct: {r['rps_direct']:.0f})"
    )
    diff = r["detection_via_s"] - r["detection_direct_s"]
    print(
        f"  pipe detection latency (median of {REPEATS}): direct {r['detection_direct_s']:.2f} s, through the gateway"
        f" {r['detection_via_s']:.2f} s, difference {diff:+.2f} s (target within 0.1 s)"
    )
    beyond = r["beyond_floor_via_s"] - r["beyond_floor_direct_s"]
    print(
        f"  pipe exit after the run's closing log line reached the server: direct {r['beyond_floor_direct_s']:.2f} s,"
        f" through the gateway {r['beyond_floor_via_s']:.2f} s, difference {beyond:+.2f} s"
    )


def main() -> int:
    print("Starting a local Prefect server and worker…", flush=True)
    server = start_server()
    try:
        run(server)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
