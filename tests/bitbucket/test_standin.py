"""The stand-in's own checks: a payload that breaks Bitbucket's documented rules must be caught, or a
passing reporter test would prove nothing."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.bitbucket.conftest import COMMIT
from tests.bitbucket.standin import BitbucketStandIn, check_report, check_status

GOOD_STATUS = {"key": "prefect-greet-ci", "state": "SUCCESSFUL", "url": "https://prefect.example.com/runs/1"}
GOOD_REPORT = {"title": "Prefect greet/ci", "details": "Completed.", "report_type": "TEST", "result": "PASSED"}
STATUS_PATH = f"/2.0/repositories/acme/data-pipelines/commit/{COMMIT}/statuses/build"


def test_good_payloads_pass() -> None:
    assert check_status(GOOD_STATUS) == []
    assert (
        check_report({**GOOD_REPORT, "data": [{"title": "Duration", "type": "DURATION", "value": 5}]}, "prefect-1")
        == []
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"key": None}, "required field 'key'"),
        ({"key": "k" * 41}, "at most 40"),
        ({"state": "DONE"}, "state 'DONE'"),
        ({"url": "ftp://example.com"}, "not an http(s) URL"),
        ({"name": "n" * 256}, "at most 255"),
        ({"description": "two\nlines"}, "line break"),
        ({"colour": "green"}, "unknown field 'colour'"),
    ],
)
def test_bad_statuses_are_caught(change: dict[str, Any], expected: str) -> None:
    body = {k: v for k, v in {**GOOD_STATUS, **change}.items() if v is not None}
    assert any(expected in problem for problem in check_status(body)), check_status(body)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"details": None}, "required field 'details'"),
        ({"report_type": "LINT"}, "report_type 'LINT'"),
        ({"result": "OK"}, "result 'OK'"),
        ({"title": "t" * 451}, "at most 450"),
        ({"data": [{"title": f"f{i}", "type": "NUMBER", "value": i} for i in range(11)]}, "at most 10"),
        ({"data": [{"title": "Duration", "type": "DURATION", "value": "12s"}]}, "not a valid DURATION"),
        ({"data": [{"title": "Run", "type": "LINK", "value": {"text": "run"}}]}, "not a valid LINK"),
        ({"data": [{"title": "Started", "type": "DATE", "value": "2026-11-29"}]}, "not a valid DATE"),
        ({"data": [{"title": "State", "type": "STRING", "value": "ok"}]}, "type 'STRING'"),
        ({"data": [{"title": "x" * 51, "type": "TEXT", "value": "ok"}]}, "longer than 50"),
    ],
)
def test_bad_reports_are_caught(change: dict[str, Any], expected: str) -> None:
    body = {k: v for k, v in {**GOOD_REPORT, **change}.items() if v is not None}
    assert any(expected in problem for problem in check_report(body, "prefect-1")), check_report(body, "prefect-1")


def test_a_report_id_that_is_not_url_safe_is_caught() -> None:
    assert check_report(GOOD_REPORT, "greet/ci")


def test_a_direct_request_without_authorization_is_refused() -> None:
    with BitbucketStandIn() as standin:
        response = requests.post(standin.api_url + STATUS_PATH.removeprefix("/2.0"), json=GOOD_STATUS, timeout=5)
        assert response.status_code == 401
        assert standin.problems and "Authorization header missing" in standin.problems[0]
        assert standin.statuses() == []


def test_a_proxied_request_must_be_plain_http_to_the_api_and_authless() -> None:
    with BitbucketStandIn() as standin:
        proxies = {"http": standin.proxy_url}
        url = "http://api.bitbucket.org" + STATUS_PATH
        ok = requests.post(url, json=GOOD_STATUS, proxies=proxies, timeout=5)
        leaked = requests.post(url, json=GOOD_STATUS, proxies=proxies, headers={"Authorization": "Bearer x"}, timeout=5)
        assert (ok.status_code, leaked.status_code) == (201, 401)
        assert [r.via_proxy for r in standin.requests] == [True, True]
        assert standin.requests[0].target == url
        assert any("Authorization header sent through the Pipelines proxy" in p for p in standin.problems)


def test_scripted_failures_come_first() -> None:
    with BitbucketStandIn() as standin:
        standin.fail_next(502)
        url = "http://api.bitbucket.org" + STATUS_PATH
        codes = [
            requests.post(url, json=GOOD_STATUS, proxies={"http": standin.proxy_url}, timeout=5).status_code
            for _ in range(2)
        ]
        assert codes == [502, 201]
