"""The Reporter against the Bitbucket API stand-in: what reaches Bitbucket for each way a run ends,
how it gets there (token or Pipelines proxy), and that reporting never fails or slows a build much."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest

from pipe.bitbucket import Reporter, insights
from pipe.bitbucket.api import BitbucketApi, RetryPolicy
from pipe.bitbucket.settings import ReportSettings
from pipe.build import Build
from tests.bitbucket.conftest import BUILD_ENV, COMMIT, FAST, TOKEN, make_result, make_run, validated
from tests.bitbucket.standin import BitbucketStandIn


def from_config(variables: dict[str, Any], env: dict[str, str], retry: RetryPolicy | None = None) -> Reporter:
    """The reporter as the pipe builds it from its Config (report settings and the build)."""
    return Reporter.from_config(ReportSettings.load(variables), Build.from_env(env), retry=retry)


def reporter_for(standin: BitbucketStandIn, env: dict[str, str] | None = None, **variables: str) -> Reporter:
    values = {"BITBUCKET_API_URL": standin.api_url, "BITBUCKET_PIPELINES_PROXY": standin.proxy_url, **variables}
    return from_config(validated(**values), env if env is not None else BUILD_ENV, retry=FAST)


def reports_nothing(reporter: Reporter) -> bool:
    return reporter._statuses_api is None and reporter._insights_api is None


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "root" and r.levelno == level]


def data_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["title"]: item for item in report["data"]}


@pytest.fixture(autouse=True)
def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


# -- how a run ends ----------------------------------------------------------------------------


def test_success_reports_inprogress_then_successful_with_the_run_link(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run, duration_seconds=12.3))

    assert standin.problems == []
    assert [r.kind for r in standin.requests] == ["status", "report", "status", "report"]
    started, finished = standin.statuses()
    assert [started["state"], finished["state"]] == ["INPROGRESS", "SUCCESSFUL"]
    assert started["key"] == finished["key"] and len(finished["key"]) <= 40
    assert finished["url"] == run.flow_run_url
    assert "greet/ci" in finished["name"]
    assert "completed in 12s" in finished["description"]
    assert "refname" not in finished  # a push build, not a pull request
    assert all(r.match["commit"] == COMMIT and r.match["workspace"] == "acme" for r in standin.requests)

    pending, passed = standin.reports()
    assert [pending["result"], passed["result"]] == ["PENDING", "PASSED"]
    assert passed["report_type"] == "TEST"
    assert "greet/ci" in passed["title"] and "greet/ci" in passed["details"]
    fields = data_of(passed)
    assert fields["Duration"] == {"title": "Duration", "type": "DURATION", "value": 12300}
    assert fields["Flow run"]["value"] == {"text": "crimson-fox", "href": run.flow_run_url}
    assert fields["State"]["value"] == "Completed"
    assert fields["Deployment"]["value"] == "greet/ci"
    assert fields["Deployment version"]["value"] == "3f2a9c1"
    assert "Error" not in fields
    assert lines(caplog, logging.WARNING) == [] and lines(caplog, logging.INFO) == []


def test_failure_reports_failed_with_the_error_and_failing_task(standin: BitbucketStandIn) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run("fail/ci")
    reporter.run_finished(
        make_result(
            run,
            "FAILED",
            duration_seconds=3.2,
            state_message="Flow run encountered an exception: RuntimeError: boom",
            failing_task="explode-0",
        )
    )

    assert standin.problems == []
    (status,) = standin.statuses()
    assert status["state"] == "FAILED"
    assert "failed after 3s" in status["description"]
    assert "explode-0" in status["description"] and "boom" in status["description"]
    (report,) = standin.reports()
    assert report["result"] == "FAILED"
    fields = data_of(report)
    assert "RuntimeError: boom" in fields["Error"]["value"]
    assert fields["Failing task"]["value"] == "explode-0"
    assert fields["State"]["value"] == "Failed"


@pytest.mark.parametrize(
    ("overrides", "phrase", "state_text"),
    [
        ({"state_type": "RUNNING", "state_name": "Running", "timed_out": True, "cancel_requested": True},
         "did not finish within TIMEOUT", "Running (pipe timed out)"),
        ({"state_type": "RUNNING", "state_name": "Running", "stopped": True, "cancel_requested": True},
         "was cancelled: the step was stopped", "Running (step stopped)"),
        ({"state_type": "CANCELLED", "state_name": "Cancelled"}, "was cancelled after 12s", "Cancelled"),
    ],
    ids=["timeout", "step-stopped", "cancelled"],
)  # fmt: skip
def test_timeout_stop_and_cancel_report_stopped(
    standin: BitbucketStandIn, overrides: dict[str, Any], phrase: str, state_text: str
) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run, **overrides))

    assert standin.problems == []
    assert [s["state"] for s in standin.statuses()] == ["INPROGRESS", "STOPPED"]
    assert phrase in standin.statuses()[-1]["description"]
    final = standin.reports()[-1]
    assert final["result"] == "FAILED"
    assert data_of(final)["State"]["value"] == state_text


def test_a_run_not_waited_for_stays_in_progress(standin: BitbucketStandIn) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run()
    reporter.run_finished(make_result(run, state_type="SCHEDULED", state_name="Scheduled", duration_seconds=None))

    assert standin.problems == []
    assert [s["state"] for s in standin.statuses()] == ["INPROGRESS"]
    assert standin.reports()[0]["result"] == "PENDING"
    assert "Duration" not in data_of(standin.reports()[0])


def test_pull_request_build_sets_refname_to_the_source_branch(standin: BitbucketStandIn) -> None:
    env = {**BUILD_ENV, "BITBUCKET_PR_ID": "17", "BITBUCKET_BRANCH": "feature/faster-etl"}
    reporter = reporter_for(standin, env, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run))

    assert standin.problems == []
    assert [s.get("refname") for s in standin.statuses()] == ["feature/faster-etl", "feature/faster-etl"]


# -- identity: key and report id ---------------------------------------------------------------


def test_key_and_report_id_are_stable_per_deployment_and_distinct_between_deployments(
    standin: BitbucketStandIn,
) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    for deployment in ("greet/ci", "greet/ci", "greet/nightly", "greet-ci/x", "greet/ci-x"):
        reporter.run_started(make_run(deployment))

    assert standin.problems == []
    keys = [s["key"] for s in standin.statuses()]
    report_ids = [r.match["report_id"] for r in standin.accepted("report")]
    assert keys[0] == keys[1] and report_ids[0] == report_ids[1]
    assert len(set(keys)) == 4 and len(set(report_ids)) == 4
    assert keys[0].startswith("prefect-greet-ci")


def test_long_values_are_cut_to_bitbucket_limits(standin: BitbucketStandIn) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run(
        "f" * 150 + "/" + "d" * 150,
        flow_run_name="n" * 300,
        flow_run_url="https://prefect.example.com/runs/flow-run/" + "x" * 600,
        deployment_version="v" * 900,
    )
    reporter.run_finished(
        make_result(run, "FAILED", state_message="line one\nline two " + "e" * 5000, failing_task="t" * 600)
    )

    assert standin.problems == []  # the stand-in checks every length against Bitbucket's limits
    (status,) = standin.statuses()
    assert len(status["key"]) <= 40
    assert status["description"].endswith("…")
    # A URL cannot be shortened: the pipeline's page stands in for a flow run URL that is too long.
    assert status["url"] == "https://bitbucket.org/acme/data-pipelines/pipelines/results/42"
    (report,) = standin.reports()
    assert "link" not in report and "Flow run" not in data_of(report)
    assert len(report["data"]) <= 10


# -- credentials and the Pipelines proxy -------------------------------------------------------


def test_without_a_credential_statuses_are_skipped_and_the_report_goes_through_the_proxy(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = reporter_for(standin)
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run))

    assert standin.problems == []  # includes: no Authorization header through the proxy
    assert standin.statuses() == []
    assert [r["result"] for r in standin.reports()] == ["PENDING", "PASSED"]
    for request in standin.requests:
        assert request.via_proxy
        assert request.target.startswith(
            f"http://api.bitbucket.org/2.0/repositories/acme/data-pipelines/commit/{COMMIT}"
        )
        assert "Authorization" not in request.headers
    info = lines(caplog, logging.INFO)
    assert len(info) == 1, info  # said once per run, not once per call
    assert "statuses skipped" in info[0] and "BITBUCKET_ACCESS_TOKEN" in info[0]
    assert lines(caplog, logging.WARNING) == []


def test_with_a_credential_inside_pipelines_the_report_still_goes_through_the_proxy(
    standin: BitbucketStandIn,
) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    reporter.run_started(make_run())

    assert standin.problems == []  # includes: no Authorization header through the proxy
    status, report = standin.requests
    assert (status.kind, status.via_proxy) == ("status", False)
    assert (report.kind, report.via_proxy) == ("report", True)


def test_with_a_credential_outside_pipelines_the_report_goes_to_the_api(standin: BitbucketStandIn) -> None:
    reporter = reporter_for(standin, {k: v for k, v in BUILD_ENV.items() if k != "CI"}, BITBUCKET_ACCESS_TOKEN=TOKEN)
    reporter.run_started(make_run())

    assert standin.problems == []
    assert [(r.kind, r.via_proxy) for r in standin.requests] == [("status", False), ("report", False)]


def test_half_a_credential_is_named_in_the_skip_line(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = reporter_for(standin, ATLASSIAN_ACCOUNT_EMAIL="dev@example.com")
    reporter.run_started(make_run())

    assert standin.statuses() == [] and len(standin.reports()) == 1
    assert "ATLASSIAN_ACCOUNT_EMAIL is set without ATLASSIAN_API_TOKEN" in lines(caplog, logging.INFO)[0]


def test_without_a_credential_outside_pipelines_nothing_is_sent(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    env = {k: v for k, v in BUILD_ENV.items() if k != "CI"}
    reporter = reporter_for(standin, env)
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run))

    assert standin.requests == []
    info = lines(caplog, logging.INFO)
    assert len(info) == 1 and "outside Pipelines" in info[0]


def test_atlassian_api_token_is_sent_as_basic_auth(standin: BitbucketStandIn) -> None:
    standin.expect_authorization = (
        "Basic ZGV2QGV4YW1wbGUuY29tOmF0bC1hcGktdG9rZW4tMTIz"  # dev@example.com:atl-api-token-123
    )
    reporter = reporter_for(
        standin,
        ATLASSIAN_ACCOUNT_EMAIL="dev@example.com",
        ATLASSIAN_API_TOKEN="atl-api-token-123",
        BITBUCKET_ACCESS_TOKEN=TOKEN,
    )
    reporter.run_started(make_run())

    assert standin.problems == []  # the email + API token pair wins over the access token, as in the toolkit
    assert len(standin.statuses()) == 1


def test_deprecated_app_password_still_works_with_one_warning(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.expect_authorization = "Basic amRvZTphcHAtcGFzc3dvcmQtNDU2"  # jdoe:app-password-456
    reporter = reporter_for(standin, BITBUCKET_USERNAME="jdoe", BITBUCKET_APP_PASSWORD="app-password-456")
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run))

    assert standin.problems == [] and len(standin.statuses()) == 2
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "deprecated" in warnings[0]


def test_a_token_is_never_sent_over_plain_http_to_a_remote_host(caplog: pytest.LogCaptureFixture) -> None:
    reporter = from_config(
        validated(BITBUCKET_ACCESS_TOKEN=TOKEN, BITBUCKET_API_URL="http://bitbucket.example.com/2.0"),
        {k: v for k, v in BUILD_ENV.items() if k != "CI"},
        retry=FAST,
    )
    reporter.run_started(make_run())

    info = lines(caplog, logging.INFO)
    assert len(info) == 1 and "plain http://" in info[0]
    assert reports_nothing(reporter)


# -- Bitbucket trouble never changes the build -------------------------------------------------


def test_api_errors_give_one_warning_and_no_exception(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.always_fail = 503
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run()
    started = time.monotonic()
    reporter.run_started(run)
    reporter.run_finished(make_result(run, "FAILED", state_message="boom"))

    assert time.monotonic() - started < 5
    # 5xx is transient: the first call of each channel (statuses direct, reports through the proxy)
    # retries within the policy, the calls after it try once each.
    assert len(standin.requests) == 2 * FAST.attempts + 2
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "HTTP 503" in warnings[0] and "build result is unaffected" in warnings[0]
    assert TOKEN not in caplog.text


def test_a_transient_error_is_retried_and_then_succeeds(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.fail_next(503, 429)
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    reporter.run_started(make_run())

    assert [r.answered for r in standin.requests] == [503, 429, 201, 200]
    assert [s["state"] for s in standin.statuses()] == ["INPROGRESS"]
    assert lines(caplog, logging.WARNING) == []


def test_a_refused_credential_is_not_retried_and_the_warning_names_it(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.expect_authorization = "Bearer another-token"
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    reporter.run_started(make_run())

    # One try: 4xx is not transient. The report goes through the Pipelines proxy, without the token.
    assert [(r.kind, r.answered) for r in standin.requests] == [("status", 401), ("report", 200)]
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "HTTP 401" in warnings[0] and "Check BITBUCKET_ACCESS_TOKEN" in warnings[0]
    assert TOKEN not in caplog.text


def test_connection_refused_is_bounded_with_the_real_retry_policy(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = f"http://127.0.0.1:{port}"
    reporter = from_config(
        validated(
            BITBUCKET_ACCESS_TOKEN=TOKEN, BITBUCKET_API_URL=f"{unreachable}/2.0", BITBUCKET_PIPELINES_PROXY=unreachable
        ),
        BUILD_ENV,
    )
    run = make_run()
    started = time.monotonic()
    reporter.run_started(run)
    reporter.run_finished(make_result(run))
    elapsed = time.monotonic() - started

    policy = RetryPolicy()
    one_backoff = sum(policy.backoff * 2**i for i in range(policy.attempts - 1))  # 0.5 s + 1 s
    # The first call of each channel (statuses, reports) backs off; the calls after them do not.
    assert 2 * one_backoff <= elapsed < 2 * one_backoff + 1.5
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "could not be reached" in warnings[0]


def test_a_slow_api_times_out_within_the_deadline(standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture) -> None:
    standin.delay = 2.0
    slow = RetryPolicy(attempts=2, backoff=0.01, connect_timeout=0.5, read_timeout=0.3, deadline=1.0)
    reporter = from_config(
        validated(BITBUCKET_ACCESS_TOKEN=TOKEN, BITBUCKET_API_URL=standin.api_url), BUILD_ENV, retry=slow
    )
    started = time.monotonic()
    reporter.run_started(make_run())

    assert time.monotonic() - started < 2 * slow.deadline + 1
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "timed out" in warnings[0]


def test_an_unexpected_error_while_reporting_is_swallowed(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise KeyError("bug")

    monkeypatch.setattr(insights, "payload", broken)
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    reporter.run_started(make_run())

    assert len(standin.statuses()) == 1  # the status still went out
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "KeyError" in warnings[0]


# -- when nothing is reported ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variables"),
    [
        (BUILD_ENV, {"REPORT": "false", "BITBUCKET_ACCESS_TOKEN": TOKEN}),
        ({k: v for k, v in BUILD_ENV.items() if k != "BITBUCKET_COMMIT"}, {"BITBUCKET_ACCESS_TOKEN": TOKEN}),
        ({"PATH": "/usr/bin"}, {}),
    ],
    ids=["REPORT-false", "no-commit", "outside-bitbucket"],
)
def test_nothing_is_reported_when_off_or_outside_bitbucket(
    standin: BitbucketStandIn, caplog: pytest.LogCaptureFixture, env: dict[str, str], variables: dict[str, str]
) -> None:
    reporter = reporter_for(standin, env, **variables)
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run))

    assert reports_nothing(reporter)
    assert standin.requests == []
    assert lines(caplog, logging.INFO) == [] and lines(caplog, logging.WARNING) == []


def test_an_unreachable_pipelines_proxy_is_explained(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reporter = from_config(validated(BITBUCKET_PIPELINES_PROXY=f"http://127.0.0.1:{port}"), BUILD_ENV, retry=FAST)
    run = make_run()
    reporter.run_started(run)
    reporter.run_finished(make_result(run))

    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "BITBUCKET_PIPELINES_PROXY" in warnings[0]


def test_a_failure_while_configuring_turns_reporting_off_without_raising(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(BitbucketApi, "direct", broken)
    reporter = from_config(validated(BITBUCKET_ACCESS_TOKEN=TOKEN), BUILD_ENV)
    reporter.run_started(make_run())

    assert reports_nothing(reporter)
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "ValueError" in warnings[0]


def test_a_run_created_with_wait_false_leaves_nothing_pending(standin: BitbucketStandIn) -> None:
    reporter = reporter_for(standin, BITBUCKET_ACCESS_TOKEN=TOKEN)
    run = make_run()
    reporter.run_started(run, awaited=False)

    assert standin.problems == []
    [status] = standin.statuses()
    [report] = standin.reports()
    assert status["state"] == "SUCCESSFUL" and "not awaited (WAIT=false)" in status["description"]
    assert report["result"] == "PASSED" and "not awaited" in report["details"]
    assert data_of(report)["Flow run"]["value"]["href"] == run.flow_run_url
