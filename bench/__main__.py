"""`make bench`: this pipe side by side with `prefect deployment run --watch` and `run_deployment`,
against a real local Prefect server and process worker.

Prints medians of several runs and ratios:

* detection latency: tool exit minus the run's end time, over short runs of spread lengths (the flow
  engine ships its last lines up to a second after the end, depending on where its heartbeat thread
  is in its 1-second sleep); and, beside it, the floor: when the run's closing log line reached the
  server. A tool that shows every line cannot exit before it (``run_deployment`` shows none).
* HTTP requests for a 20-second run (websockets counted apart);
* time from start to a created run (without waiting);
* fan-out: several deployments started and awaited at once (the pipe's DEPLOYMENTS; N CLI processes
  side by side; N ``run_deployment`` calls gathered in one process): wall time and requests;
* the gateway (``bench/gateway.py``): latency it adds per proxied request, requests per second of one
  worker, and the pipe's detection latency through it vs direct.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.pipe import ROOT
from tests.support.prefect_server import FLOWS, PrefectServer, sdk_client, start_server
from tests.support.proxy import CountingProxy

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
RUN_SECONDS = 20
FAN_OUT = int(os.environ.get("BENCH_FAN_OUT", "4"))
FAN_OUT_SECONDS = 5

Command = tuple[list[str], dict[str, str]]


def deploy_fan_out(server: PrefectServer) -> list[str]:
    """FAN_OUT deployments of the sleepy flow (``sleepy/bench-<i>``)."""
    code = (
        "import sys; from prefect import flow\n"
        f"for i in range({FAN_OUT}):\n"
        f"    flow.from_source(source={str(FLOWS)!r}, entrypoint='flows.py:sleepy').deploy(\n"
        f"        name=f'bench-{{i}}', work_pool_name={server.pool!r}, print_next_steps=False, build=False, push=False)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=server.client_env(), check=True, capture_output=True, timeout=300)
    return [f"sleepy/bench-{i}" for i in range(FAN_OUT)]


def latest_run(server: PrefectServer, deployment: str) -> Any:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with sdk_client(server) as c:
        dep = c.read_deployment_by_name(deployment)
        [run] = c.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        return run


def settle(server: PrefectServer, deployment: str, limit: float = 60.0) -> None:
    """Wait until the deployment's latest run has ended."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        flow_run = latest_run(server, deployment)
        if flow_run.state is not None and flow_run.state.is_final():
            return
        time.sleep(0.5)


def closing_line_arrival(server: PrefectServer, flow_run_id: Any) -> datetime | None:
    """When the engine's "Finished in state" line of the run reached the server."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with sdk_client(server) as c:
        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    closing = [log.created for log in logs if log.message.startswith("Finished in state") and not log.task_run_id]
    return max(closing) if closing else None


class Tools:
    def __init__(self, server: PrefectServer, proxy: CountingProxy) -> None:
        self.server = server
        self.proxy = proxy
        self.api_url = proxy.api_url
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

    # Each tool: the command that runs ``runs`` ([(deployment, parameters)]) and waits (or not).

    def pipe(self, runs: list[tuple[str, dict[str, Any]]], wait: bool) -> list[Command]:
        env = {
            "WAIT": "true" if wait else "false",
            "BITBUCKET_PIPELINE_UUID": "{" + os.urandom(8).hex() + "}",
            "BITBUCKET_STEP_UUID": "{" + os.urandom(8).hex() + "}",
        }
        if len(runs) == 1:
            env |= {"DEPLOYMENT": runs[0][0], "PARAMETERS": json.dumps(runs[0][1])}
        else:
            env["DEPLOYMENTS_COUNT"] = str(len(runs))
            for i, (deployment, params) in enumerate(runs):
                env[f"DEPLOYMENTS_{i}"] = json.dumps({"deployment": deployment, "parameters": params})
        return [([sys.executable, "-m", "pipe"], env)]

    def cli(self, runs: list[tuple[str, dict[str, Any]]], wait: bool) -> list[Command]:
        """One `prefect deployment run` per deployment, side by side."""
        commands: list[Command] = []
        for deployment, params in runs:
            args = [str(Path(sys.executable).parent / "prefect"), "deployment", "run", deployment]
            for key, value in params.items():
                args += ["--param", f"{key}={value}"]
            commands.append((args + (["--watch"] if wait else []), {}))
        return commands

    def run_deployment(self, runs: list[tuple[str, dict[str, Any]]], wait: bool) -> list[Command]:
        """``run_deployment`` for each deployment, gathered in one process."""
        code = (
            "import asyncio, json, sys\n"
            "from prefect.deployments import run_deployment\n"
            f"runs = json.loads({json.dumps(runs)!r})\n"
            "async def main():\n"
            f"    done = await asyncio.gather(*(run_deployment(d, parameters=p, timeout={None if wait else 0}) for d, p in runs))\n"
            f"    return 0 if not {wait!r} or all(r.state and r.state.is_completed() for r in done) else 1\n"
            "sys.exit(asyncio.run(main()))\n"
        )
        return [([sys.executable, "-c", code], {})]

    def measure(
        self,
        tool: Callable[[list[tuple[str, dict[str, Any]]], bool], list[Command]],
        runs: list[tuple[str, dict[str, Any]]],
        wait: bool = True,
    ) -> dict[str, float]:
        self.proxy.counts.reset()
        started = time.time()
        procs = [
            subprocess.Popen(
                args, env={**self.env(), **extra}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for args, extra in tool(runs, wait)
        ]
        outputs = [proc.communicate(timeout=600) for proc in procs]
        exited = time.time()
        for proc, (out, err) in zip(procs, outputs, strict=True):
            if proc.returncode != 0:
                print(out.decode()[-2000:], err.decode()[-2000:], file=sys.stderr)
        result = {
            "wall": exited - started,
            "requests": self.proxy.counts.requests,
            "websockets": self.proxy.counts.websockets,
        }
        if wait and len(runs) == 1:
            flow_run = latest_run(self.server, runs[0][0])
            if flow_run.end_time is not None:
                result["latency"] = exited - flow_run.end_time.timestamp()
                arrival = closing_line_arrival(self.server, flow_run.id)
                if arrival is not None:
                    result["floor"] = arrival.timestamp() - flow_run.end_time.timestamp()
        return result


def quick_lengths() -> list[float]:
    """1.0, 2.2, 3.4, ... seconds: spread evenly over a second (the engine's shipping delay) and over
    five (run_deployment's poll), so no tool's timing lands in its lucky or unlucky phase every time."""
    return [round(1 + i * (1 + 1 / REPEATS), 2) for i in range(REPEATS)]


def median(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    print("Starting a local Prefect server and worker…", flush=True)
    server = start_server()
    proxy = CountingProxy(server.port).start()
    try:
        fan_out = deploy_fan_out(server)
        tools = Tools(server, proxy)
        names = {
            "prefect-trigger": tools.pipe,
            "prefect deployment run --watch": tools.cli,
            "run_deployment": tools.run_deployment,
        }
        results: dict[str, dict[str, float]] = {}
        for name, tool in names.items():
            quick = [tools.measure(tool, [("sleepy/ci", {"seconds": s, "lines": 2})]) for s in quick_lengths()]
            long = [tools.measure(tool, [("sleepy/ci", {"seconds": RUN_SECONDS, "lines": 5})])]
            create = []
            for _ in range(REPEATS):
                create.append(tools.measure(tool, [("greet/ci", {"count": 1})], wait=False))
                settle(server, "greet/ci")  # its flow process would compete with the next start
            fan = [
                tools.measure(tool, [(d, {"seconds": FAN_OUT_SECONDS, "lines": 2}) for d in fan_out])
                for _ in range(max(1, REPEATS // 2))
            ]
            results[name] = {
                "latency": median(quick, "latency"),
                "floor": median(quick, "floor"),
                "requests_20s": median(long, "requests"),
                "websockets_20s": median(long, "websockets"),
                "time_to_created": median(create, "wall"),
                "fan_out_wall": median(fan, "wall"),
                "fan_out_requests": median(fan, "requests"),
                "fan_out_websockets": median(fan, "websockets"),
            }
            print(f"  {name}: { {k: round(v, 2) for k, v in results[name].items()} }", flush=True)
        report(results)
        from bench import default_server, gateway

        gateway.run(server)
        # A second server, with Prefect's default settings (no logs stream).
        default_server.report(default_server.measure(), results["prefect-trigger"])
        return 0
    finally:
        proxy.stop()
        server.stop()


def report(results: dict[str, dict[str, float]]) -> None:
    head = (
        f"{'tool':<32} {'latency s':>9} {'(floor s)':>9} {'reqs 20 s run':>13} {'to created s':>12}"
        f" {f'fan-out x{FAN_OUT} wall s':>18} {'fan-out reqs':>12}"
    )
    print("\n" + head)
    for name, row in results.items():
        print(
            f"{name:<32} {row['latency']:>9.2f} {row['floor']:>9.2f} {row['requests_20s']:>13.0f}"
            f" {row['time_to_created']:>12.2f} {row['fan_out_wall']:>18.2f} {row['fan_out_requests']:>12.0f}"
        )
    base = results["prefect-trigger"]
    for name, row in results.items():
        if name != "prefect-trigger":
            print(
                f"ratio {name} / prefect-trigger: latency {row['latency'] / base['latency']:.1f}x,"
                f" requests {row['requests_20s'] / max(base['requests_20s'], 1):.1f}x,"
                f" time to created {row['time_to_created'] / base['time_to_created']:.2f}x,"
                f" fan-out wall {row['fan_out_wall'] / base['fan_out_wall']:.2f}x,"
                f" fan-out requests {row['fan_out_requests'] / max(base['fan_out_requests'], 1):.1f}x"
            )
    sockets = ", ".join(f"{n} {r['websockets_20s']:.0f}" for n, r in results.items())
    fan_sockets = ", ".join(f"{n} {r['fan_out_websockets']:.0f}" for n, r in results.items())
    print(
        f"(medians: latency of {REPEATS} runs of {quick_lengths()[0]}-{quick_lengths()[-1]} s, requests of one"
        f" {RUN_SECONDS}-second run, fan-out of {max(1, REPEATS // 2)} x {FAN_OUT} runs of {FAN_OUT_SECONDS} s;"
        f" websockets, 20-second run: {sockets}; fan-out: {fan_sockets}; {datetime.now(UTC):%Y-%m-%d})"
    )


if __name__ == "__main__":
    sys.exit(main())
