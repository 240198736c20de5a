"""Shared fixtures: a real Prefect server, a typical step's variables, and a reader of the server.
The helpers behind them live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pipe import BITBUCKET_ENV, step_uuid
from tests.support.prefect_server import PrefectInspector, PrefectServer, start_server
from tests.support.trickle import trickling  # noqa: F401 - a fixture for every test module


def pytest_addoption(parser: pytest.Parser) -> None:
    from tests.faults.plugin import add_option

    add_option(parser)  # --run-long: the long fault tier (make test-long)


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
        "BITBUCKET_STEP_UUID": step_uuid(),
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_API_AUTH_STRING": prefect_server.auth_string,
        "DEPLOYMENT": "greet/ci",
        # Reporting to Bitbucket has its own tests (tests/bitbucket) against a stand-in API.
        "REPORT": "false",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "TIMEOUT": "120",
    }


@pytest.fixture(scope="session")
def prefect(prefect_server: PrefectServer) -> PrefectInspector:
    return PrefectInspector(prefect_server)
