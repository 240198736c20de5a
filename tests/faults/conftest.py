"""Fixtures of the fault tests: the long tier switch, a pipe environment per step, and the leak scan
over every byte a test prints."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults import leakscan
from tests.faults.plugin import run_long


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
def step_env(pipe_env: dict[str, str]) -> dict[str, str]:
    """A typical step's variables (a unique step, so a unique idempotency key) with a unique tag that
    finds this step's runs on the server. PREFECT_API_URL is the caller's to set (the proxy)."""
    return {**pipe_env, "TAGS_COUNT": "1", "TAGS_0": f"faults-{os.urandom(5).hex()}"}
