"""Shared fixtures: a real Prefect server, a way to run the pipe as Bitbucket does, and a leak scan."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.prefect_server import PrefectServer, start_server

ROOT = Path(__file__).resolve().parent.parent

# Bitbucket's default variables for a push to main (values shaped like the real ones).
BITBUCKET_ENV = {
    "CI": "true",
    "BITBUCKET_COMMIT": "0f3c1e2d4b5a69788796a5b4c3d2e1f00f1e2d3c",
    "BITBUCKET_BRANCH": "main",
    "BITBUCKET_BUILD_NUMBER": "42",
    "BITBUCKET_WORKSPACE": "acme",
    "BITBUCKET_REPO_SLUG": "data-pipelines",
    "BITBUCKET_REPO_FULL_NAME": "acme/data-pipelines",
    "BITBUCKET_REPO_OWNER": "acme",
    "BITBUCKET_REPO_UUID": "{1b2c3d4e-0000-4000-8000-000000000001}",
    "BITBUCKET_PIPELINE_UUID": "{aaaaaaaa-0000-4000-8000-000000000002}",
    "BITBUCKET_STEP_UUID": "{bbbbbbbb-0000-4000-8000-000000000003}",
    "BITBUCKET_STEP_RUN_NUMBER": "1",
    "BITBUCKET_GIT_HTTP_ORIGIN": "http://bitbucket.org/acme/data-pipelines",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    from tests.faults.plugin import add_option

    add_option(parser)  # --run-long: the long fault tier (make test-long)


@dataclass
class PipeResult:
    code: int
    output: str

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"exit {self.code}\n{self.output}"


def run_pipe(env: Mapping[str, str], timeout: float = 300, cwd: Path | None = None) -> PipeResult:
    """Run ``python -m pipe`` with only the given variables (plus PATH/HOME), as a step would."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "SSL_CERT_FILE") if k in os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "pipe"],
        env={**base, **env},
        cwd=str(cwd or ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    return PipeResult(proc.returncode, proc.stdout.decode("utf-8", "replace"))


def assert_no_secrets(output: str, *secrets: str) -> None:
    for secret in secrets:
        if not secret:
            continue
        assert secret not in output, "a secret appeared in the output"
        if ":" in secret:  # user:password — the password alone must not appear either
            assert secret.split(":", 1)[1] not in output, "a password appeared in the output"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def pipe_env(prefect_server: PrefectServer, tmp_path: Path) -> dict[str, str]:
    """The variables of a typical step: Bitbucket's defaults plus the pipe's own."""
    shared = tmp_path / "shared"
    shared.mkdir()
    return {
        **BITBUCKET_ENV,
        "BITBUCKET_CLONE_DIR": str(tmp_path),
        "BITBUCKET_PIPE_SHARED_STORAGE_DIR": str(shared),
        "BITBUCKET_PIPE_STORAGE_DIR": str(tmp_path / "storage"),
        # A unique step per test, so idempotency keys never collide between tests.
        "BITBUCKET_STEP_UUID": "{" + os.urandom(4).hex() + "-0000-4000-8000-" + os.urandom(6).hex() + "}",
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_API_AUTH_STRING": prefect_server.auth_string,
        "DEPLOYMENT": "greet/ci",
        # Reporting to Bitbucket has its own tests (tests/bitbucket) against a stand-in API.
        "REPORT": "false",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "TIMEOUT": "120",
    }


class PrefectInspector:
    """Reads the server directly (with the Prefect SDK) to check what the pipe did."""

    def __init__(self, server: PrefectServer) -> None:
        self.server = server

    def _client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.server.api_url, auth_string=self.server.auth_string)

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


@pytest.fixture(scope="session")
def prefect(prefect_server: PrefectServer) -> PrefectInspector:
    return PrefectInspector(prefect_server)
