"""The pipe end to end, run as `python -m pipe` against a real Prefect server and process worker."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.leaks import assert_no_secrets
from tests.support.pipe import BITBUCKET_ENV, PipeResult, run_pipe
from tests.support.prefect_server import PrefectInspector, PrefectServer
from tests.support.processes import free_port
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.prefect

RUN_ID = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")


def flow_run_id(result: PipeResult) -> str:
    match = RUN_ID.search(result.output)
    assert match, result
    return match.group(1)


def fail_line(result: PipeResult) -> str:
    lines = [line for line in result.output.splitlines() if "✖" in line]
    assert len(lines) == 1, result
    return lines[0]


def assert_clean_failure(result: PipeResult, *expected: str) -> None:
    assert result.code == 1, result
    line = fail_line(result)
    for text in expected:
        assert text in line, result
    own_lines = [line for line in result.output.splitlines() if "prefect │" not in line]  # not the flow's logs
    assert not any("Traceback" in line for line in own_lines), result


def test_completed_run_streams_logs_and_passes_commit_metadata(
    pipe_env: dict[str, str], prefect: PrefectInspector, tmp_path: Path
) -> None:
    variables = tmp_path / "vars.env"
    result = run_pipe(
        {**pipe_env, "BITBUCKET_PIPELINES_VARIABLES_PATH": str(variables), "TAGS_COUNT": "1", "TAGS_0": "smoke"}
    )
    assert result.code == 0, result
    assert "✔" in result.output
    assert "prefect │" in result.output and "last line of greet" in result.output
    assert f"commit_sha={BITBUCKET_ENV['BITBUCKET_COMMIT']} branch=main build_number=42" in result.output
    assert "bitbucket repository=acme/data-pipelines" in result.output

    run = prefect.flow_run(flow_run_id(result))
    assert run.state.type.value == "COMPLETED"
    assert run.parameters["commit_sha"] == BITBUCKET_ENV["BITBUCKET_COMMIT"]
    assert run.parameters["build_number"] == 42  # declared int, sent as int
    assert run.parameters["bitbucket"]["repository"] == "acme/data-pipelines"
    assert "tag" not in run.parameters and "pull_request_id" not in run.parameters  # not declared by the flow
    assert {"smoke", "commit:0f3c1e2", "branch:main", "build:42"} <= set(run.tags)
    assert run.name == "data-pipelines-build-42-main-0f3c1e2"
    assert run.labels.get("bitbucket.pipeline_url", "").startswith(
        "https://bitbucket.org/acme/data-pipelines/pipelines/results/42"
    )

    shared = json.loads((Path(pipe_env["BITBUCKET_PIPE_SHARED_STORAGE_DIR"]) / "_shared_variables.json").read_text())
    [entry] = shared["prefect_flow_runs"]
    assert entry["flow_run_id"] == str(run.id) and entry["state"] == "COMPLETED" and entry["deployment"] == "greet/ci"
    lines = variables.read_text().splitlines()
    assert f"PREFECT_FLOW_RUN_ID={run.id}" in lines and "PREFECT_FLOW_RUN_STATE=COMPLETED" in lines


def test_user_parameters_win_over_commit_values(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    result = run_pipe({**pipe_env, "PARAMETERS": '{"name": "bitbucket", "commit_sha": "override", "count": 1}'})
    assert result.code == 0, result
    assert "hello bitbucket #0" in result.output and "hello bitbucket #1" not in result.output
    assert prefect.flow_run(flow_run_id(result)).parameters["commit_sha"] == "override"


def test_commit_parameters_off(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    result = run_pipe({**pipe_env, "COMMIT_PARAMETERS": "false", "WAIT": "false"})
    assert result.code == 0, result
    assert "commit_sha" not in prefect.flow_run(flow_run_id(result)).parameters


def test_failed_run_exits_1_and_names_the_task(pipe_env: dict[str, str]) -> None:
    result = run_pipe({**pipe_env, "DEPLOYMENT": "fail/ci", "PARAMETERS": '{"reason": "disk full"}'})
    assert_clean_failure(result, "Failed")
    assert "about to fail" in result.output
    assert re.search(r"Failed task\s+explode", result.output), result
    assert "disk full" in result.output


def test_crashed_run_exits_1(pipe_env: dict[str, str]) -> None:
    result = run_pipe({**pipe_env, "DEPLOYMENT": "crash/ci"})
    assert_clean_failure(result, "Crashed")


def test_timeout_cancels_the_run(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    started = time.monotonic()
    result = run_pipe({**pipe_env, "DEPLOYMENT": "sleepy/ci", "PARAMETERS": '{"seconds": 120}', "TIMEOUT": "6"})
    assert_clean_failure(result, "TIMEOUT=6", "cancellation requested")
    assert time.monotonic() - started < 6 + 25
    run_id = flow_run_id(result)
    deadline = time.monotonic() + 30
    while prefect.flow_run(run_id).state.type.value not in ("CANCELLED", "CANCELLING") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert prefect.flow_run(run_id).state.type.value in ("CANCELLED", "CANCELLING")


def test_timeout_without_cancel_leaves_the_run(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    result = run_pipe(
        {
            **pipe_env,
            "DEPLOYMENT": "sleepy/ci",
            "PARAMETERS": '{"seconds": 8}',
            "TIMEOUT": "2",
            "CANCEL_ON_TIMEOUT": "false",
        }
    )
    assert_clean_failure(result, "TIMEOUT=2", "CANCEL_ON_TIMEOUT=false")
    assert prefect.flow_run(flow_run_id(result)).state.type.value not in ("CANCELLED", "CANCELLING")


@pytest.mark.parametrize("seconds", [2, 8])
def test_waiting_costs_the_same_few_requests_however_long_the_run(
    seconds: int, pipe_env: dict[str, str], prefect_server: PrefectServer
) -> None:
    """States come by the events websocket and lines by the logs websocket: a run costs the same
    handful of HTTP requests whatever its length. The states are read at the start and to confirm the
    end (once more if the read lags the event), where polling would read them 4 times in 8 seconds;
    lines are read by request only when the stream did not bring the last ones in time (a slow
    machine), and then never more than reading them without a stream costs a 20-second run (12).
    A request the server answered 429 or 5xx (SQLite busy) and the client repeated counts once."""
    env = dict(pipe_env, DEPLOYMENT="sleepy/ci", PARAMETERS=json.dumps({"seconds": seconds, "lines": seconds}))
    with CountingProxy(prefect_server.port) as proxy:
        env["PREFECT_API_URL"] = proxy.api_url
        result = run_pipe(env)
    assert result.code == 0, result
    assert f"tick {seconds - 1}" in result.output and "last line of sleepy" in result.output
    assert proxy.counts.websockets == 2, proxy.counts
    paths = [answer.path for answer in proxy.counts.served()]
    reads = Counter(path.rsplit("/", 2)[-2] for path in paths if path.endswith("/filter"))
    assert reads["flow_runs"] <= 3 and set(reads) <= {"flow_runs", "logs"}, paths
    assert len(paths) - reads.total() == 4, paths  # the server's version, the deployment, a CSRF token, the run
    assert len(paths) <= 12, paths


def test_wait_false_returns_once_created(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    result = run_pipe({**pipe_env, "DEPLOYMENT": "sleepy/ci", "PARAMETERS": '{"seconds": 5}', "WAIT": "false"})
    assert result.code == 0, result
    assert "WAIT=false" in result.output and "prefect │" not in result.output
    assert prefect.flow_run(flow_run_id(result)).state.type.value in ("SCHEDULED", "PENDING", "RUNNING")


def test_dry_run_creates_nothing(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    before = len(prefect.flow_runs("greet/ci"))
    result = run_pipe({**pipe_env, "DRY_RUN": "true", "PARAMETERS": '{"count": 1}'})
    assert result.code == 0, result
    assert '"commit_sha": "0f3c1e2d' in result.output and '"count": 1' in result.output
    assert "prefect-trigger:" in result.output  # the idempotency key that would be used
    assert len(prefect.flow_runs("greet/ci")) == before


def test_one_run_per_step_attempt(pipe_env: dict[str, str], prefect: PrefectInspector) -> None:
    env = {**pipe_env, "WAIT": "false"}
    first = run_pipe(env)
    again = run_pipe(env)  # the same step attempt retried: the same run
    assert first.code == 0 and again.code == 0, (first, again)
    assert flow_run_id(first) == flow_run_id(again)
    rerun = run_pipe({**env, "BITBUCKET_STEP_RUN_NUMBER": "2"})  # "Rerun failed steps": a fresh run
    assert rerun.code == 0, rerun
    assert flow_run_id(rerun) != flow_run_id(first)
    other = run_pipe({**env, "DEPLOYMENT": "fail/ci"})  # another deployment in the same step
    assert flow_run_id(other) not in (flow_run_id(first), flow_run_id(rerun))


def test_deployment_by_id(pipe_env: dict[str, str], prefect_server: PrefectServer) -> None:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(prefect_server.api_url, auth_string=prefect_server.auth_string) as client:
        deployment_id = client.read_deployment_by_name("greet/ci").id
    result = run_pipe({**pipe_env, "DEPLOYMENT": str(deployment_id), "DRY_RUN": "true"})
    assert result.code == 0, result
    assert "greet/ci" in result.output


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"DEPLOYMENT": "greet/nope"}, ["greet/nope", "not found"]),
        ({"DEPLOYMENT": "6f1e7c1a-1d1f-4a53-9a64-5f0e8f3b2c11"}, ["not found"]),
        ({"PARAMETERS": '{"nme": "x"}'}, ["'nme'", "Accepted parameters", "count"]),
        ({"PARAMETERS": '{"count": "three"}'}, ["'count'", "integer"]),
        ({"PARAMETERS": "{oops"}, ["PARAMETERS", "not valid JSON"]),
        ({"TIMEOUT": "soon"}, ["TIMEOUT"]),
        ({"ACTION": "destroy"}, ["ACTION"]),
        ({"PREFECT_API_AUTH_STRING": "prefect-admin:wrong-password-123"}, ["401", "PREFECT_API_AUTH_STRING"]),
        ({"DEPLOYMENT": ""}, ["DEPLOYMENT"]),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(
    pipe_env: dict[str, str], prefect: PrefectInspector, extra: dict[str, str], expected: list[str]
) -> None:
    before = prefect.count_all_runs()
    result = run_pipe({**pipe_env, **extra})
    assert_clean_failure(result, *expected)
    assert prefect.count_all_runs() == before


def test_unreachable_server(pipe_env: dict[str, str]) -> None:
    result = run_pipe({**pipe_env, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}, timeout=120)
    assert_clean_failure(result, "cannot reach the Prefect API", "PREFECT_API_URL")


def test_plain_http_to_remote_host_is_refused(pipe_env: dict[str, str]) -> None:
    result = run_pipe({**pipe_env, "PREFECT_API_URL": "http://prefect.example.com/api"})
    assert_clean_failure(result, "https://")


def test_debug_shows_traceback_but_never_secrets(pipe_env: dict[str, str], prefect_server: PrefectServer) -> None:
    ok = run_pipe({**pipe_env, "DEBUG": "true"})
    assert ok.code == 0, ok
    assert "DEBUG" in ok.output
    bad = run_pipe({**pipe_env, "DEBUG": "true", "DEPLOYMENT": "greet/nope"})
    assert bad.code == 1 and "Traceback" in bad.output
    for result in (ok, bad):
        assert_no_secrets(result.output, prefect_server.auth_string)
