"""`make bench`: this pipe side by side with `prefect deployment run --watch` and `run_deployment`,
against a real local Prefect server and process worker.

Prints medians of several runs: detection latency (tool exit minus the run's end time), HTTP
requests for a 20-second run, time from start to a created run, and fan-out wall time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.counting_proxy import CountingProxy
from tests.prefect_server import PrefectServer, start_server

ROOT = Path(__file__).resolve().parent.parent
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
RUN_SECONDS = 20


def last_run_end(server: PrefectServer, deployment: str) -> tuple[str, datetime | None]:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with SyncPrefectClient(server.api_url, auth_string=server.auth_string) as client:
        dep = client.read_deployment_by_name(deployment)
        [run] = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        return run.state.type.value, run.end_time


class Tools:
    def __init__(self, server: PrefectServer, proxy: CountingProxy) -> None:
        self.server = server
        self.proxy = proxy
        self.api_url = f"http://127.0.0.1:{proxy.port}/api"
        self.home = tempfile.mkdtemp(prefix="bench-")

    def env(self) -> dict[str, str]:
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        return {
            **base,
            "PREFECT_HOME": self.home,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": self.server.auth_string,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def pipe(self, deployment: str, params: str, wait: bool = True) -> list[str]:
        return [sys.executable, "-m", "pipe"], {
            "DEPLOYMENT": deployment,
            "PARAMETERS": params,
            "WAIT": "true" if wait else "false",
            "BITBUCKET_PIPELINE_UUID": "{" + os.urandom(8).hex() + "}",
            "BITBUCKET_STEP_UUID": "{" + os.urandom(8).hex() + "}",
        }

    def cli(self, deployment: str, params: str, wait: bool = True) -> list[str]:
        import json

        args = [str(Path(sys.executable).parent / "prefect"), "deployment", "run", deployment]
        for key, value in json.loads(params).items():
            args += ["--param", f"{key}={value}"]
        return args + (["--watch"] if wait else []), {}

    def run_deployment(self, deployment: str, params: str, wait: bool = True) -> list[str]:
        code = (
            "import json,sys; from prefect.deployments import run_deployment; "
            f"r = run_deployment({deployment!r}, parameters=json.loads({params!r}), timeout={None if wait else 0}); "
            "sys.exit(0 if (not r.state or r.state.is_completed() or not {wait!r}) else 1)".replace(
                "{wait!r}", repr(wait)
            )
        )
        return [sys.executable, "-c", code], {}

    def measure(
        self, tool: Callable[..., tuple[list[str], dict[str, str]]], deployment: str, params: str, wait: bool
    ) -> dict[str, float]:
        args, extra = tool(deployment, params, wait)
        self.proxy.counts.reset()
        started = time.time()
        proc = subprocess.run(
            args, env={**self.env(), **extra}, cwd=ROOT, capture_output=True, timeout=600, check=False
        )
        exited = time.time()
        if proc.returncode != 0:
            print(proc.stdout.decode()[-2000:], proc.stderr.decode()[-2000:], file=sys.stderr)
        _state, end = last_run_end(self.server, deployment)
        result = {
            "wall": exited - started,
            "requests": self.proxy.counts.requests,
            "websockets": self.proxy.counts.websockets,
            "code": proc.returncode,
        }
        if wait and end is not None:
            result["latency"] = exited - end.timestamp()
        return result


def median(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    print("Starting a local Prefect server and worker…", flush=True)
    server = start_server()
    proxy = CountingProxy(server.port).start()
    try:
        tools = Tools(server, proxy)
        names = {
            "prefect-trigger": tools.pipe,
            "prefect deployment run --watch": tools.cli,
            "run_deployment": tools.run_deployment,
        }
        results: dict[str, dict[str, float]] = {}
        for name, tool in names.items():
            quick = [tools.measure(tool, "greet/ci", '{"count": 3}', wait=True) for _ in range(REPEATS)]
            long = [
                tools.measure(tool, "sleepy/ci", f'{{"seconds": {RUN_SECONDS}, "lines": 5}}', wait=True)
                for _ in range(max(1, REPEATS // 2))
            ]
            create = [tools.measure(tool, "greet/ci", '{"count": 1}', wait=False) for _ in range(REPEATS)]
            results[name] = {
                "latency": median(quick + long, "latency"),
                "requests_20s": median(long, "requests"),
                "websockets_20s": median(long, "websockets"),
                "time_to_created": median(create, "wall"),
            }
            print(f"  {name}: {results[name]}", flush=True)
        base = results["prefect-trigger"]
        print(f"\n{'tool':<32} {'detect latency s':>16} {'HTTP reqs (20 s run)':>21} {'time to created s':>18}")
        for name, row in results.items():
            print(f"{name:<32} {row['latency']:>16.2f} {row['requests_20s']:>21.0f} {row['time_to_created']:>18.2f}")
        for name, row in results.items():
            if name != "prefect-trigger":
                print(
                    f"ratio {name} / prefect-trigger: latency {row['latency'] / base['latency']:.1f}x, "
                    f"requests {row['requests_20s'] / max(base['requests_20s'], 1):.1f}x, "
                    f"time to created {row['time_to_created'] / base['time_to_created']:.2f}x"
                )
        print(
            f"(medians of {REPEATS} runs of a short flow and {max(1, REPEATS // 2)} of a {RUN_SECONDS}-second flow, {datetime.now(UTC):%Y-%m-%d})"
        )
        return 0
    finally:
        proxy.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
