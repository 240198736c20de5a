"""The waiter against the real Prefect server and worker: a flow that logs faster than the logs
stream delivers, a run whose pull step fails on the worker, a run no worker takes."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import pytest

from pipe.credentials import Credential
from pipe.prefect_api import PrefectApi
from pipe.secret import Secret
from pipe.waiter import Waiter, WaitOutcome
from tests.support.pipe import run_pipe
from tests.support.prefect_server import PrefectServer, sdk_client

pytestmark = pytest.mark.prefect


def test_a_flow_logging_thousands_of_lines_has_each_printed_once(
    pipe_env: dict[str, str], prefect_server: PrefectServer
) -> None:
    """The server drops what exceeds 256 lines waiting for a subscriber: the rest is read back. Every
    line the server stored is printed once (a loaded server may not store all a flow logs)."""
    result = run_pipe({**pipe_env, "DEPLOYMENT": "chatty/ci", "PARAMETERS": json.dumps({"lines": 3000})})
    assert result.code == 0, result
    printed = re.findall(r"chatty line (\d+)$", result.output, re.MULTILINE)
    run_id = re.findall(r"/runs/flow-run/([0-9a-f-]{36})", result.output)[0]
    messages = stored_messages(prefect_server, uuid.UUID(run_id))
    stored = [m for m in messages if m.startswith("chatty line")]
    assert len(stored) > 256
    assert sorted(map(int, printed)) == sorted(int(m.split()[-1]) for m in stored), result
    assert result.output.count("last line of chatty") == messages.count("last line of chatty")


def stored_messages(server: PrefectServer, flow_run_id: uuid.UUID) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    messages: list[str] = []
    with sdk_client(server) as client:
        while page := client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=len(messages)
        ):
            messages += [log.message for log in page]
    return messages


def follow(server: PrefectServer, deployment: str, seconds: float) -> WaitOutcome:
    """Create a run of ``deployment`` and follow it with the waiter for at most ``seconds``."""

    async def main() -> WaitOutcome:
        credential = Credential("auth_string", Secret(server.auth_string), "test")
        async with PrefectApi(server.api_url, credential) as api:
            found: Any = await api.client.read_deployment_by_name(deployment)
            created = await api.client.create_flow_run_from_deployment(found.id)
            outcomes = await Waiter(api, [created.id], time.monotonic() + seconds).wait()
            return outcomes[created.id]

    return asyncio.run(main())


def test_a_run_whose_pull_step_fails_crashed_before_its_flow(prefect_server: PrefectServer) -> None:
    outcome = follow(prefect_server, "greet/bad-pull", 120)
    assert outcome.flow_run.state is not None and outcome.flow_run.state.type.value == "CRASHED"
    assert outcome.crashed_before_flow and outcome.last_step == "git_clone"
    assert not outcome.timed_out


def test_a_run_no_worker_takes_never_started(prefect_server: PrefectServer) -> None:
    outcome = follow(prefect_server, "greet/idle", 3)
    assert outcome.timed_out and outcome.never_started
    assert outcome.work_pool == f"{prefect_server.pool}-idle" and outcome.live_workers == 0


def test_the_pipe_says_no_worker_took_the_run(pipe_env: dict[str, str], prefect_server: PrefectServer) -> None:
    result = run_pipe({**pipe_env, "DEPLOYMENT": "greet/idle", "TIMEOUT": "5"})
    assert result.code == 1, result
    assert "was not taken by any worker within TIMEOUT=5s" in result.output, result
    assert f"work pool '{prefect_server.pool}-idle' has no live worker" in result.output, result


def test_the_pipe_says_a_pull_step_crashed_the_run(pipe_env: dict[str, str], prefect_server: PrefectServer) -> None:
    result = run_pipe({**pipe_env, "DEPLOYMENT": "greet/bad-pull"})
    assert result.code == 1, result
    assert "crashed in its pull step" in result.output or "crashed before its flow started" in result.output, result
    assert "log of the worker of work pool" in result.output, result
