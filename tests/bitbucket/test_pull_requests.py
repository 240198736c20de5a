"""Reading pull request states against the Bitbucket stand-in: each state read right, and every refusal,
outage or unreadable answer one PullRequestError that names the variable, never the credential."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from pipe.bitbucket.api import BitbucketApi, RetryPolicy
from pipe.bitbucket.auth import BitbucketAuth
from pipe.bitbucket.pull_requests import OPEN, STATES, PullRequestError, read_states
from pipe.build import Build
from pipe.secret import Secret
from tests.bitbucket.conftest import BUILD_ENV, TOKEN
from tests.bitbucket.standin import BitbucketStandIn
from tests.support.standin import Answer, json_answer

SOURCE = "BITBUCKET_ACCESS_TOKEN"
BUILD = Build.from_env(BUILD_ENV)  # acme/data-pipelines
FAST = RetryPolicy(attempts=3, backoff=0.01, connect_timeout=1.0, read_timeout=1.0, deadline=2.0)
PATH = "/2.0/repositories/acme/data-pipelines/pullrequests/"


def api_for(standin: BitbucketStandIn) -> BitbucketApi:
    return BitbucketApi.direct(standin.api_url, BitbucketAuth(SOURCE, Secret(f"Bearer {TOKEN}")), FAST)


def read(standin: BitbucketStandIn, *ids: str) -> dict[str, str]:
    return read_states(api_for(standin), BUILD, ids, SOURCE)


def failure(standin: BitbucketStandIn, *ids: str) -> PullRequestError:
    with pytest.raises(PullRequestError) as caught:
        read(standin, *ids)
    assert TOKEN not in str(caught.value)
    return caught.value


def pull_request(number: int, state: str = OPEN, **extra: Any) -> Answer:
    return json_answer(200, {"type": "pullrequest", "id": number, "state": state, "title": "Change", **extra})


# -- states ---------------------------------------------------------------------------------------


def test_each_state_is_read_for_its_pull_request(standin: BitbucketStandIn) -> None:
    for number, state in enumerate(STATES, start=1):
        standin.pull_requests[("acme", "data-pipelines", number)] = state
    standin.pull_requests[("acme", "other-repo", 1)] = "DECLINED"  # another repository's #1 is not ours

    states = read(standin, "1", "2", "3", "4")

    assert states == {"1": "OPEN", "2": "MERGED", "3": "DECLINED", "4": "SUPERSEDED"}
    assert standin.problems == []
    assert [r.path for r in standin.pull_request_reads()] == [f"{PATH}{n}" for n in (1, 2, 3, 4)]


def test_an_id_given_twice_is_read_once(standin: BitbucketStandIn) -> None:
    standin.pull_requests[("acme", "data-pipelines", 7)] = "MERGED"
    assert read(standin, "7", "7") == {"7": "MERGED"}
    assert len(standin.pull_request_reads()) == 1


def test_no_ids_reads_nothing(standin: BitbucketStandIn) -> None:
    assert read(standin) == {}
    assert standin.requests == []


def test_a_draft_is_open(standin: BitbucketStandIn) -> None:
    standin.queued.append(pull_request(5, OPEN, draft=True))
    assert read(standin, "5") == {"5": OPEN}


def test_requests_are_authorised_reads_without_a_body(standin: BitbucketStandIn) -> None:
    standin.pull_requests[("acme", "data-pipelines", 3)] = "OPEN"
    standin.pull_requests[("acme", "data-pipelines", 4)] = "MERGED"
    read(standin, "3", "4")

    assert standin.problems == []  # the stand-in checked the header against the token and the empty body
    assert [r.method for r in standin.requests] == ["GET", "GET"]
    assert [r.answered for r in standin.requests] == [200, 200]
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in standin.requests)
    assert all(r.body is None for r in standin.requests)
    assert all(not received.body and received.method == "GET" for received in standin.received)


def test_the_repository_is_escaped_in_the_path() -> None:
    build = Build(workspace="{4d2c-uuid}", repo_slug="data pipelines", repository="team/data pipelines")
    with BitbucketStandIn(expect_authorization=f"Bearer {TOKEN}") as standin:
        standin.pull_requests[("{4d2c-uuid}", "data pipelines", 9)] = "DECLINED"
        assert read_states(api_for(standin), build, ["9"], SOURCE) == {"9": "DECLINED"}
        # requests escapes the braces on the wire as well; Bitbucket (and the stand-in) decodes them.
        assert standin.requests[0].target == "/2.0/repositories/%7B4d2c-uuid%7D/data%20pipelines/pullrequests/9"


# -- refusals -------------------------------------------------------------------------------------


def test_a_token_without_the_scope_names_the_variable_and_the_scope(standin: BitbucketStandIn) -> None:
    standin.forbidden = True
    error = failure(standin, "12")

    assert error.message == f"{SOURCE} may not read pull requests of acme/data-pipelines (HTTP 403)"
    assert error.fix is not None
    assert "'Pull requests: Read'" in error.fix and "read:pullrequest:bitbucket" in error.fix
    assert len(standin.pull_request_reads()) == 1  # a 403 is not retried


def test_an_unknown_pull_request_is_a_404_and_nothing_is_deleted(standin: BitbucketStandIn) -> None:
    standin.pull_requests[("acme", "data-pipelines", 1)] = "MERGED"
    error = failure(standin, "1", "404")

    assert error.message == "Bitbucket has no pull request #404 in acme/data-pipelines (HTTP 404)"
    assert "nothing was deleted" in str(error)
    assert [r.answered for r in standin.requests] == [200, 404]


def test_a_refused_token_is_a_401(standin: BitbucketStandIn) -> None:
    standin.pull_requests[("acme", "data-pipelines", 8)] = "OPEN"
    standin.expect_authorization = "Bearer another-token"  # Bitbucket knows another credential
    error = failure(standin, "8")

    assert error.message == (
        f"Bitbucket refused {SOURCE} (HTTP 401) when reading pull request #8 of acme/data-pipelines"
    )
    assert error.fix == "check that the token is valid and not expired"


# -- outages --------------------------------------------------------------------------------------


def test_a_503_is_retried_and_then_read(standin: BitbucketStandIn) -> None:
    standin.pull_requests[("acme", "data-pipelines", 6)] = "MERGED"
    standin.fail_next(503)

    assert read(standin, "6") == {"6": "MERGED"}
    assert [r.answered for r in standin.pull_request_reads()] == [503, 200]


def test_an_api_that_stays_down_deletes_nothing(standin: BitbucketStandIn) -> None:
    standin.pull_requests[("acme", "data-pipelines", 6)] = "MERGED"
    standin.always_fail = 503
    error = failure(standin, "6")

    assert "HTTP 503" in error.message
    assert error.fix == "try again later; nothing was deleted"
    assert len(standin.pull_request_reads()) == FAST.attempts


def test_an_unreachable_api_deletes_nothing() -> None:
    with BitbucketStandIn() as gone:
        url = gone.api_url
    api = BitbucketApi.direct(url, BitbucketAuth(SOURCE, Secret(f"Bearer {TOKEN}")), FAST)
    with pytest.raises(PullRequestError) as caught:
        read_states(api, BUILD, ["6"], SOURCE)
    assert "could not be reached" in caught.value.message
    assert "nothing was deleted" in str(caught.value)


# -- unreadable answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(200, "not json"), "not JSON"),
        (Answer(200, "<html>Bitbucket</html>", content_type="text/html"), "not JSON"),
        (json_answer(200, ["OPEN"]), "not a JSON object"),
        (json_answer(200, {"type": "pullrequest", "id": 12}), "no state"),
        (json_answer(200, {"type": "pullrequest", "id": 12, "state": "CLOSED"}), "state 'CLOSED' is not one of"),
        (json_answer(200, {"type": "pullrequest", "id": 12, "state": None}), "state None is not one of"),
        (json_answer(200, {"type": "pullrequest", "id": 13, "state": "MERGED"}), "about pull request #13"),
        (json_answer(200, {"type": "pullrequest", "id": "12", "state": "MERGED"}), "no id"),
        (json_answer(200, {"type": "pullrequest", "state": "MERGED"}), "no id"),
    ],
)
def test_an_unreadable_answer_deletes_nothing(standin: BitbucketStandIn, answer: Answer, reason: str) -> None:
    standin.queued.append(answer)
    error = failure(standin, "12")

    assert error.message.startswith(
        "Bitbucket's answer for pull request #12 of acme/data-pipelines could not be read ("
    )
    assert reason in error.message
    assert error.fix == "nothing was deleted; report this if it persists"


def test_a_state_with_control_characters_stays_on_one_line(standin: BitbucketStandIn) -> None:
    standin.queued.append(pull_request(12, "OPEN\n\x1b[2J✔ deleted"))
    error = failure(standin, "12")
    assert "\n" not in str(error) and "\x1b" not in str(error)


# -- the stand-in's own checks --------------------------------------------------------------------


def test_the_standin_refuses_a_read_that_is_not_a_clean_get(standin: BitbucketStandIn) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with_body = requests.get(
        standin.api_url + "/repositories/acme/data-pipelines/pullrequests/1",
        json={"state": "OPEN"},
        headers=headers,
        timeout=5,
    )
    not_digits = requests.get(
        standin.api_url + "/repositories/acme/data-pipelines/pullrequests/one", headers=headers, timeout=5
    )
    no_header = requests.get(standin.api_url + "/repositories/acme/data-pipelines/pullrequests/1", timeout=5)

    assert (with_body.status_code, not_digits.status_code, no_header.status_code) == (400, 400, 401)
    assert any("carries a body" in p for p in standin.problems)
    assert any("'one' is not digits" in p for p in standin.problems)
    assert any("Authorization header missing" in p for p in standin.problems)
    assert [r.kind for r in standin.requests] == ["pull_request"] * 3
