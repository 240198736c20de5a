"""A real Prefect server (SQLite) with a real process work pool and worker, for tests, the demo and
the benchmark, and a reader that checks on the server what the pipe did.

Started once per test session on a free loopback port with an auth string, so only the right
credential works. Nothing here is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import Process, free_port, stop_all

FLOWS = Path(__file__).resolve().parent.parent / "flows"
POOL = "pipe-tests"
AUTH_STRING = "prefect-admin:s3cr3t-auth-Str1ng-for-tests"


@dataclass
class PrefectServer:
    home: Path
    port: int
    auth_string: str = AUTH_STRING
    pool: str = POOL
    python: str = sys.executable  # whose Prefect runs the server, the worker and the deployments
    stream_logs: bool = True  # the /logs/out websocket, as on Prefect Cloud; off is a self-hosted default
    processes: list[Process] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def client_env(self) -> dict[str, str]:
        """Environment for a Prefect client (CLI, SDK) talking to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BITBUCKET_"))}
        env.update(
            PREFECT_HOME=str(self.home / "client"),
            PREFECT_API_URL=self.api_url,
            PREFECT_API_AUTH_STRING=self.auth_string,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_CLI_PROMPT="false",
        )
        return env

    def _spawn(self, args: list[str], env: dict[str, str], log: str) -> Process:
        process = Process(args, self.home / log, env=env)
        self.processes.append(process)
        return process

    def start(self) -> PrefectServer:
        """The API, the work pool, the sample deployments and a worker."""
        self.start_api()
        prefect = str(Path(self.python).parent / "prefect")
        client = self.client_env()
        subprocess.run(
            [prefect, "work-pool", "create", self.pool, "--type", "process", "--overwrite"],
            env=client,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [self.python, str(FLOWS / "deploy_samples.py"), self.pool],
            env=client,
            check=True,
            capture_output=True,
            timeout=300,
        )
        worker_env = dict(client, PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
        self._spawn([prefect, "worker", "start", "--pool", self.pool, "--type", "process"], worker_env, "worker.log")
        return self

    def start_api(self) -> PrefectServer:
        """Only the API server (what a client is told on first contact needs no more)."""
        env = self.client_env()
        env.pop("PREFECT_API_URL")
        env.pop("PREFECT_API_AUTH_STRING")
        env.update(
            PREFECT_HOME=str(self.home / "server"),
            PREFECT_SERVER_API_AUTH_STRING=self.auth_string,
            PREFECT_UI_ENABLED="false",
        )
        if self.stream_logs:
            # Stream logs over the /logs/out websocket, as Prefect Cloud does (both settings are needed).
            env.update(
                PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED="true", PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED="true"
            )
        prefect = str(Path(self.python).parent / "prefect")
        server = self._spawn(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)], env, "server.log"
        )
        server.wait_healthy(f"{self.api_url}/health", timeout=90)
        return self

    def stop(self) -> None:
        stop_all(self.processes, timeout=15)


def start_server(python: str = sys.executable, stream_logs: bool = True) -> PrefectServer:
    home = Path(tempfile.mkdtemp(prefix="prefect-trigger-tests-"))
    return PrefectServer(home=home, port=free_port(), python=python, stream_logs=stream_logs).start()


def sdk_client(server: PrefectServer) -> Any:
    """A synchronous Prefect SDK client of the server (imported late: the SDK is slow to import)."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(server.api_url, auth_string=server.auth_string)


class PrefectInspector:
    """Reads the server directly (with the Prefect SDK) to check what the pipe did."""

    def __init__(self, server: PrefectServer) -> None:
        self.server = server

    def _client(self) -> Any:
        return sdk_client(self.server)

    def flow_runs(self, deployment: str) -> list[Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        with self._client() as client:
            dep = client.read_deployment_by_name(deployment)
            return list(client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))))

    def flow_run(self, run_id: str) -> Any:
        with self._client() as client:
            return client.read_flow_run(run_id)

    def count_all_runs(self) -> int:
        with self._client() as client:
            return len(client.read_flow_runs(limit=200))
