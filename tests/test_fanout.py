"""DEPLOYMENTS: several deployments in one step, created together and awaited together."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.pipe import run_pipe
from tests.support.prefect_server import PrefectInspector, PrefectServer
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.prefect


def several(env: dict[str, str], *entries: str) -> dict[str, str]:
    env = {k: v for k, v in env.items() if k != "DEPLOYMENT"}
    env["DEPLOYMENTS_COUNT"] = str(len(entries))
    env.update({f"DEPLOYMENTS_{i}": entry for i, entry in enumerate(entries)})
    return env


def test_all_complete(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    env = several(pipe_env, "greet/ci", '{"deployment": "sleepy/ci", "parameters": {"seconds": 2, "lines": 1}}')
    result = run_pipe(env)
    assert result.code == 0, result
    assert "All 2 flow runs completed" in result.output
    assert "[greet/ci] prefect │" in result.output and "last line of greet" in result.output
    assert "[sleepy/ci] prefect │" in result.output and "last line of sleepy" in result.output
    assert re.search(r"greet/ci\s+Completed", result.output) and re.search(r"sleepy/ci\s+Completed", result.output)
    shared = json.loads((Path(pipe_env["BITBUCKET_PIPE_SHARED_STORAGE_DIR"]) / "_shared_variables.json").read_text())
    assert sorted(entry["deployment"] for entry in shared["prefect_flow_runs"]) == ["greet/ci", "sleepy/ci"]
    assert {entry["state"] for entry in shared["prefect_flow_runs"]} == {"COMPLETED"}


def test_one_failure_fails_the_step_and_is_named(pipe_env: dict[str, str]) -> None:
    env = several(pipe_env, "greet/ci", '{"deployment": "fail/ci", "parameters": {"reason": "bad row"}}')
    result = run_pipe(env)
    assert result.code == 1, result
    [line] = [line for line in result.output.splitlines() if "✖" in line]
    assert "1 of 2 flow runs did not complete: fail/ci (Failed)" in line
    assert "bad row" in result.output and "last line of greet" in result.output


def test_entry_parameters_are_checked_before_anything_is_created(
    pipe_env: dict[str, str], prefect: PrefectInspector
) -> None:
    before = prefect.count_all_runs()
    env = several(pipe_env, "greet/ci", '{"deployment": "sleepy/ci", "parameters": {"secs": 2}}')
    result = run_pipe(env)
    assert result.code == 1, result
    [line] = [line for line in result.output.splitlines() if "✖" in line]
    assert "sleepy/ci" in line and "'secs'" in line
    assert prefect.count_all_runs() == before


def test_runs_share_one_subscription_and_few_requests(pipe_env: dict[str, str], prefect_server: PrefectServer) -> None:
    """Three runs are followed on one events and one logs websocket. Only reading each deployment and
    creating each run are requests per run; the states are read for all runs in one request, and the
    other reads (the end's states, task names, failed tasks, and the log lines a slow machine's stream
    did not bring in time) are shared too: a handful in all, where polling each run would take dozens.
    A request the server answered 429 or 5xx (SQLite busy) and the client repeated counts once."""
    sleepy = '{"deployment": "sleepy/ci", "parameters": {"seconds": 3, "lines": 2}}'
    env = several(pipe_env, "greet/ci", sleepy, "fail/ci")
    with CountingProxy(prefect_server.port) as proxy:
        env["PREFECT_API_URL"] = proxy.api_url
        result = run_pipe(env)
    assert result.code == 1, result
    assert "1 of 3 flow runs did not complete: fail/ci (Failed)" in result.output
    assert re.search(r"^ fail/ci \(task explode-\w+\): ", result.output, re.M), result.output
    assert proxy.counts.websockets == 2, proxy.counts
    served = proxy.counts.served()
    paths = [answer.path for answer in served]
    per_run = [path for path in paths if "/deployments/name/" in path or path.endswith("/create_flow_run")]
    assert len(per_run) == 2 * 3, paths
    first_read = next(answer.body for answer in served if answer.path.endswith("/flow_runs/filter"))
    assert len(json.loads(first_read)["flow_runs"]["id"]["any_"]) == 3, first_read
    shared = [path for path in paths if path not in per_run]
    assert all(path.endswith("/filter") or "/admin/version" in path or "/csrf-token" in path for path in shared), shared
    assert len(shared) <= 14, paths
