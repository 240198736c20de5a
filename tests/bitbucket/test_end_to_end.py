"""The pipe end to end (``python -m pipe`` against the real Prefect server) reporting to the Bitbucket
API stand-in: statuses and the Code Insights report of real flow runs."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.bitbucket.conftest import TOKEN
from tests.bitbucket.standin import BitbucketStandIn
from tests.support.leaks import assert_no_secrets
from tests.support.pipe import PipeResult, run_pipe

pytestmark = pytest.mark.prefect

RUN_URL = re.compile(r"https?://\S+/runs/flow-run/[0-9a-f-]{36}")


@pytest.fixture()
def standin() -> Iterator[BitbucketStandIn]:
    with BitbucketStandIn(expect_authorization=f"Bearer {TOKEN}") as server:
        yield server


def run_url(result: PipeResult) -> str:
    match = RUN_URL.search(result.output)
    assert match, result
    return match.group(0)


def test_a_completed_run_is_reported_inprogress_then_successful(
    pipe_env: dict[str, str], standin: BitbucketStandIn
) -> None:
    env = {
        **pipe_env,
        "DEPLOYMENT": "greet/ci",
        "REPORT": "true",
        "BITBUCKET_API_URL": standin.api_url,
        "BITBUCKET_PIPELINES_PROXY": standin.proxy_url,  # inside Pipelines the report goes through the proxy
        "BITBUCKET_ACCESS_TOKEN": TOKEN,
    }
    result = run_pipe(env)

    assert result.code == 0, result
    assert standin.problems == [], standin.problems
    url = run_url(result)
    statuses = standin.statuses()
    assert [s["state"] for s in statuses] == ["INPROGRESS", "SUCCESSFUL"], result
    assert {s["url"] for s in statuses} == {url}
    assert statuses[0]["key"] == statuses[1]["key"]
    assert "greet/ci" in statuses[1]["name"]
    reports = standin.reports()
    assert [r["result"] for r in reports] == ["PENDING", "PASSED"]
    fields = {item["title"]: item for item in reports[-1]["data"]}
    assert fields["Flow run"]["value"]["href"] == url
    assert fields["Duration"]["type"] == "DURATION" and fields["Duration"]["value"] > 0
    assert "WARNING" not in result.output
    assert_no_secrets(result.output, TOKEN)


def test_a_failed_run_is_reported_failed_with_its_error(pipe_env: dict[str, str], standin: BitbucketStandIn) -> None:
    env = {
        **pipe_env,
        "DEPLOYMENT": "fail/ci",
        "PARAMETERS": '{"reason": "disk full"}',
        "REPORT": "true",
        "BITBUCKET_API_URL": standin.api_url,
        "BITBUCKET_PIPELINES_PROXY": standin.proxy_url,  # inside Pipelines the report goes through the proxy
        "BITBUCKET_ACCESS_TOKEN": TOKEN,
    }
    result = run_pipe(env)

    assert result.code == 1, result
    assert standin.problems == [], standin.problems
    statuses = standin.statuses()
    assert [s["state"] for s in statuses] == ["INPROGRESS", "FAILED"], result
    assert statuses[-1]["url"] == run_url(result)
    final = standin.reports()[-1]
    assert final["result"] == "FAILED"
    fields = {item["title"]: item for item in final["data"]}
    assert "disk full" in fields["Error"]["value"]
    assert fields["Failing task"]["value"].startswith("explode")
    assert_no_secrets(result.output, TOKEN)


def test_without_a_credential_the_report_goes_through_the_pipelines_proxy(
    pipe_env: dict[str, str], standin: BitbucketStandIn
) -> None:
    env = {**pipe_env, "DEPLOYMENT": "greet/ci", "REPORT": "true", "BITBUCKET_PIPELINES_PROXY": standin.proxy_url}
    env.pop("BITBUCKET_ACCESS_TOKEN", None)
    result = run_pipe(env)

    assert result.code == 0, result
    assert standin.problems == [], standin.problems
    assert standin.statuses() == []
    assert [r["result"] for r in standin.reports()] == ["PENDING", "PASSED"]
    assert all(r.via_proxy and "Authorization" not in r.headers for r in standin.requests)
    assert result.output.count("statuses skipped") == 1, result


def test_bitbucket_down_does_not_change_the_outcome(pipe_env: dict[str, str], standin: BitbucketStandIn) -> None:
    standin.always_fail = 503
    env = {
        **pipe_env,
        "DEPLOYMENT": "greet/ci",
        "REPORT": "true",
        "BITBUCKET_API_URL": standin.api_url,
        "BITBUCKET_PIPELINES_PROXY": standin.proxy_url,  # inside Pipelines the report goes through the proxy
        "BITBUCKET_ACCESS_TOKEN": TOKEN,
    }
    result = run_pipe(env)

    assert result.code == 0, result
    warnings = [line for line in result.output.splitlines() if "WARNING" in line and "Bitbucket" in line]
    assert len(warnings) == 1, result
    assert_no_secrets(result.output, TOKEN)
