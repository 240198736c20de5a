"""Fixtures of the fault tests: the long tier switch, a pipe environment per step, and the leak scan
over every byte a test prints."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BITBUCKET_ENV
from tests.faults import checks, leakscan
from tests.faults.plugin import run_long
from tests.prefect_server import PrefectServer


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
