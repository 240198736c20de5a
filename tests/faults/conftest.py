"""Fixtures of the fault tests: a Prefect server that really streams logs, the long tier switch, a
pipe environment per step, and the leak scan over every byte a test prints."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BITBUCKET_ENV, PrefectInspector
from tests.faults import checks, leakscan
from tests.faults.plugin import add_option, run_long
from tests.prefect_server import PrefectServer, free_port


class StreamingServer(PrefectServer):
    """The test server with its logs websocket delivering lines. ``/logs/out`` only sends what the
    server publishes, and publishing is a second setting (off by default) next to
    ``PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED``; without it the logs stream connects and stays
    silent, so no fault test would ever cut a stream that carries lines."""

    def client_env(self) -> dict[str, str]:
        return {**super().client_env(), "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true"}


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """Overrides the session server for this directory (drop it once tests/prefect_server.py sets
    the publishing setting itself)."""
    server = StreamingServer(home=Path(tempfile.mkdtemp(prefix="prefect-trigger-faults-")), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def inspector(prefect_server: PrefectServer) -> PrefectInspector:
    """Reads this directory's server (the root ``prefect`` fixture may be bound to the other one)."""
    return PrefectInspector(prefect_server)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_option(parser)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of the fault runs of this session (seeds, faults by type, outcomes)."""
    from tests.faults.tally import TALLY

    lines = TALLY.lines()
    if lines:
        terminalreporter.section("fault injection")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("long") is not None and not run_long(item.config):
        pytest.skip("the long fault tier runs with: make test-long (pytest -m long --run-long)")


@pytest.fixture(autouse=True)
def leak_scan(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Whatever a test printed (its own output and in-process pipe runs) must hold no secret."""
    yield
    out, err = capfd.readouterr()
    leakscan.assert_clean(out + err, where="test's printed output")


@pytest.fixture()
def step_env(prefect_server: PrefectServer, tmp_path: Path) -> dict[str, str]:
    """A step's variables with a unique step (so a unique idempotency key) and a unique tag that
    finds this step's runs on the server. PREFECT_API_URL is the caller's to set (the proxy)."""
    tag = f"faults-{os.urandom(5).hex()}"
    shared = tmp_path / "shared"
    shared.mkdir()
    return {
        **BITBUCKET_ENV,
        "BITBUCKET_CLONE_DIR": str(tmp_path),
        "BITBUCKET_PIPE_SHARED_STORAGE_DIR": str(shared),
        "BITBUCKET_PIPE_STORAGE_DIR": str(tmp_path / "storage"),
        "BITBUCKET_STEP_UUID": checks.step_uuid(),
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_API_AUTH_STRING": prefect_server.auth_string,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "DEPLOYMENT": "greet/ci",
        "TIMEOUT": "120",
        "REPORT": "false",
        "TAGS_COUNT": "1",
        "TAGS_0": tag,
    }
