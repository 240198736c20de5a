"""A real Prefect server (SQLite) with a real process work pool and worker, for tests and the demo.

Started once per test session on a free loopback port with an auth string, so only the right
credential works. Nothing here is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

FLOWS = Path(__file__).resolve().parent / "flows"
POOL = "pipe-tests"
AUTH_STRING = "prefect-admin:s3cr3t-auth-Str1ng-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrefectServer:
    home: Path
    port: int
    auth_string: str = AUTH_STRING
    pool: str = POOL
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

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

    def _spawn(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.home / log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(proc)
        return proc

    def start(self) -> PrefectServer:
        env = self.client_env()
        env.pop("PREFECT_API_URL")
        env.pop("PREFECT_API_AUTH_STRING")
        env.update(
            PREFECT_HOME=str(self.home / "server"),
            PREFECT_SERVER_API_AUTH_STRING=self.auth_string,
            PREFECT_UI_ENABLED="false",
            # Stream logs over the /logs/out websocket, as Prefect Cloud does (both settings are needed).
            PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED="true",
            PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED="true",
        )
        prefect = str(Path(sys.executable).parent / "prefect")
        self._spawn([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)], env, "server.log")
        self._wait_healthy(timeout=90)
        client = self.client_env()
        subprocess.run(
            [prefect, "work-pool", "create", self.pool, "--type", "process", "--overwrite"],
            env=client,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [sys.executable, str(FLOWS / "deploy_samples.py"), self.pool],
            env=client,
            check=True,
            capture_output=True,
            timeout=300,
        )
        worker_env = dict(client, PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
        self._spawn([prefect, "worker", "start", "--pool", self.pool, "--type", "process"], worker_env, "worker.log")
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"Prefect server did not become healthy; see {self.home / 'server.log'}")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def start_server() -> PrefectServer:
    home = Path(tempfile.mkdtemp(prefix="prefect-trigger-tests-"))
    return PrefectServer(home=home, port=free_port()).start()
