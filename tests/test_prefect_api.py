"""The Prefect API session without a Prefect server: links to the UI, the server-version rules, the
request bodies old servers take, the 422 rule and the first contact, against a stand-in API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from pipe import prefect_api
from pipe.config import DeploymentRef
from pipe.credentials import Credential
from pipe.errors import DeploymentNotFound, PrefectError
from pipe.prefect_api import PrefectApi, flow_run_ui_url
from pipe.prefect_compat import (
    LOWEST_SUPPORTED,
    UnsupportedServer,
    accepts_labels,
    check_supported,
    filter_body,
    parse_version,
    rejected_fields,
    user_input_rejected,
)
from tests.support.processes import free_port
from tests.support.standin import Answer, Received, StandIn, json_answer

T = TypeVar("T")
NO_CREDENTIAL = Credential("none", None, "none")


def test_cloud_url() -> None:
    api = "https://api.prefect.cloud/api/accounts/acc-1/workspaces/ws-2"
    assert flow_run_ui_url(api, None, "r1") == "https://app.prefect.cloud/account/acc-1/workspace/ws-2/runs/flow-run/r1"


def test_self_hosted_url() -> None:
    assert (
        flow_run_ui_url("https://prefect.example.com/api", None, "r1") == "https://prefect.example.com/runs/flow-run/r1"
    )
    assert (
        flow_run_ui_url("https://x/api", "https://ui.example.com/", "r1") == "https://ui.example.com/runs/flow-run/r1"
    )


# -- versions ------------------------------------------------------------------------------------


def test_versions_are_read_as_numbers() -> None:
    assert [parse_version(text).release for text in ("3.4.25", "3.2.0rc1", "2.20.27", "v3.1", " 3.10.0\n")] == [  # type: ignore[union-attr]
        (3, 4, 25),
        (3, 2, 0),
        (2, 20, 27),
        (3, 1, 0),
        (3, 10, 0),
    ]
    assert parse_version("unknown") is None and parse_version("") is None
    assert str(parse_version("3.2.0rc1")) == "3.2.0rc1"
    assert parse_version("3.10.0") > parse_version("3.9.1")  # type: ignore[operator]


@pytest.mark.parametrize("text", ["2.20.27", "2.99.0", "3.0.10", "1.4.0"])
def test_too_old_servers_are_refused_naming_both_versions(text: str) -> None:
    version = parse_version(text)
    assert version is not None
    with pytest.raises(UnsupportedServer) as refused:
        check_supported(version, "the Prefect API at prefect.example.com")
    line = str(refused.value)
    assert f"runs Prefect {text}" in line and f"needs Prefect {LOWEST_SUPPORTED} or newer" in line
    assert "Upgrade the Prefect server" in line and "\n" not in line


@pytest.mark.parametrize("text", [LOWEST_SUPPORTED, "3.4.25", "3.9.1", "3.10.0", "4.0.0"])
def test_supported_servers_pass(text: str) -> None:
    version = parse_version(text)
    assert version is not None
    check_supported(version, "the Prefect API at prefect.example.com")


def test_flow_run_labels_from_3_1_11() -> None:
    assert not accepts_labels(parse_version("3.1.10"))
    assert accepts_labels(parse_version("3.1.11")) and accepts_labels(parse_version("3.9.1"))
    assert accepts_labels(None)  # Prefect Cloud, or a server that hides its version


# -- request bodies ------------------------------------------------------------------------------


def test_filter_bodies_carry_only_what_was_set() -> None:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
        LogFilterTimestamp,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )

    run = uuid.uuid4()
    logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run]))
    logs.timestamp = LogFilterTimestamp(after_=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))  # type: ignore[arg-type]
    assert filter_body(logs=logs, limit=200, offset=0, sort="TIMESTAMP_ASC", flows=None) == {
        "logs": {"flow_run_id": {"any_": [str(run)]}, "timestamp": {"after_": "2026-01-02T03:04:05Z"}},
        "limit": 200,
        "offset": 0,
        "sort": "TIMESTAMP_ASC",
    }  # no "text" (3.4+), no nulls
    tasks = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=["FAILED"])))  # type: ignore[list-item]
    assert filter_body(flow_runs=FlowRunFilter(id=FlowRunFilterId(any_=[run])), task_runs=tasks, limit=1) == {
        "flow_runs": {"id": {"any_": [str(run)]}},
        "task_runs": {"state": {"type": {"any_": ["FAILED"]}}},  # no "end_time" (3.6+)
        "limit": 1,
    }


# -- the 422 rule --------------------------------------------------------------------------------


def refusal(*locs: Sequence[str | int]) -> dict[str, Any]:
    """A Prefect server's 422 body."""
    return {
        "exception_message": "Invalid request received.",
        "exception_detail": [
            {"loc": loc, "msg": "Extra inputs are not permitted", "type": "extra_forbidden"} for loc in locs
        ],
        "request_body": {},
    }


def test_rejected_fields_are_read_from_the_servers_422() -> None:
    assert rejected_fields(refusal(["body", "labels"])) == ["labels"]
    assert rejected_fields(refusal(["body", "logs", "text"], ["body", "logs", "text"])) == ["logs.text"]
    assert rejected_fields(refusal(["body", "parameters", "n"], ["body", "job_variables", 0])) == [
        "parameters.n",
        "job_variables.0",
    ]
    assert rejected_fields({"detail": "not a list"}) == [] and rejected_fields(None) == []


def test_only_user_fields_are_the_users_to_fix() -> None:
    assert user_input_rejected(["parameters.n"]) and user_input_rejected(["job_variables", "parameters"])
    assert not user_input_rejected(["labels"]) and not user_input_rejected(["parameters.n", "labels"])
    assert not user_input_rejected([])


# -- the session against a stand-in API ----------------------------------------------------------


class StandInPrefect(StandIn):
    """``/api/admin/version`` answers ``version``; a deployment read is 404, run creation 201 (or the
    queued answer), filters ``[]``. A "reset" in ``faults`` closes a connection without an answer."""

    def __init__(self, version: str | None = "3.9.1", faults: list[str | int] | None = None) -> None:
        self.version = version
        self.faults = list(faults or [])
        self.existing_run = False
        super().__init__()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def paths(self) -> list[str]:
        return [request.path for request in self.received]

    def answer(self, request: Received) -> Answer:
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "reset":
                raise ConnectionResetError("scripted reset")  # the connection closes unanswered
            return json_answer(int(fault), {"detail": "Service Unavailable"})
        if request.path == "/api/admin/version":
            return json_answer(200, self.version) if self.version else json_answer(404, {"detail": "Not Found"})
        if request.path.endswith("/create_flow_run"):
            status = 200 if self.existing_run else 201  # 200: the idempotency key found an earlier run
            return json_answer(status, {"id": str(uuid.uuid4()), "flow_id": str(uuid.uuid4()), "name": "brave-otter"})
        if request.path.endswith("/filter"):
            return json_answer(200, [])
        return json_answer(404, {"detail": "Deployment not found"})


def session(stand_in: StandInPrefect, use: Callable[[PrefectApi], Awaitable[T]]) -> T:
    async def main() -> T:
        async with PrefectApi(stand_in.api_url, NO_CREDENTIAL) as api:
            return await use(api)

    return asyncio.run(main())


def read(api: PrefectApi) -> Awaitable[Any]:
    return api.read_deployment(DeploymentRef("greet/ci"))


def test_the_first_call_reads_the_version_once_and_says_it(caplog: pytest.LogCaptureFixture) -> None:
    async def two_reads(api: PrefectApi) -> list[Any]:
        return list(await asyncio.gather(read(api), read(api), return_exceptions=True))

    with StandInPrefect("3.4.25") as stand_in:
        results = session(stand_in, two_reads)
    assert all(isinstance(result, DeploymentNotFound) for result in results), results
    assert stand_in.paths().count("/api/admin/version") == 1 and stand_in.paths()[0] == "/api/admin/version"
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Prefect server")]
    assert said == [f"Prefect server 3.4.25 at 127.0.0.1:{stand_in.port}"]


def test_a_too_old_server_is_refused_before_anything_else() -> None:
    with StandInPrefect("2.20.27") as stand_in, pytest.raises(UnsupportedServer, match=r"runs Prefect 2\.20\.27"):
        session(stand_in, read)
    assert stand_in.paths() == ["/api/admin/version"]


def test_a_hidden_version_is_taken_as_recent() -> None:
    async def create(api: PrefectApi) -> Any:
        await api.create_flow_run(uuid.uuid4(), parameters={}, tags=["t"], idempotency_key="k", labels={"a": "b"})
        return api.server_version

    with StandInPrefect(version=None) as stand_in:
        assert session(stand_in, create) is None
    assert stand_in.received[-1].json()["labels"] == {"a": "b"}


@pytest.mark.parametrize(("version", "sends_labels"), [("3.0.11", False), ("3.1.10", False), ("3.1.11", True)])
def test_runs_are_created_with_only_what_the_server_takes(version: str, sends_labels: bool) -> None:
    async def create(api: PrefectApi) -> Any:
        return await api.create_flow_run(
            uuid.uuid4(), parameters={"n": 1}, tags=["commit:0f3c1e2"], idempotency_key="k", labels={"a": "b"}
        )

    with StandInPrefect(version) as stand_in:
        flow_run, new = session(stand_in, create)
        assert flow_run.name == "brave-otter" and new
    body = stand_in.received[-1].json()
    assert ("labels" in body) is sends_labels
    assert body["parameters"] == {"n": 1} and body["tags"] == ["commit:0f3c1e2"] and body["idempotency_key"] == "k"
    assert body["state"]["type"] == "SCHEDULED"
    assert None not in body.values(), body


def test_reads_send_only_the_filters_set() -> None:
    run = uuid.uuid4()

    async def reads(api: PrefectApi) -> Any:
        return (
            await api.read_flow_runs([run]),
            await api.read_logs([run], after=datetime(2026, 1, 2, tzinfo=UTC)),
            await api.failing_tasks([run]),
        )

    with StandInPrefect("3.2.15") as stand_in:
        assert session(stand_in, reads) == ([], [], {})
    flow_runs, logs, tasks = (request.json() for request in stand_in.received if request.path.endswith("/filter"))
    assert flow_runs == {"flow_runs": {"id": {"any_": [str(run)]}}, "limit": 1}
    assert logs["logs"] == {"flow_run_id": {"any_": [str(run)]}, "timestamp": {"after_": "2026-01-02T00:00:00Z"}}
    assert tasks["task_runs"] == {"state": {"type": {"any_": ["FAILED", "CRASHED"]}}}


@pytest.mark.parametrize(
    ("loc", "expected", "not_expected"),
    [
        (["body", "parameters", "n"], "Fix PARAMETERS or JOB_VARIABLES", "did not accept"),
        (["body", "job_variables", "image"], "Fix PARAMETERS or JOB_VARIABLES", "did not accept"),
        (["body", "labels"], "(Prefect 3.1.11) did not accept labels while creating the flow run", "PARAMETERS"),
    ],
)
def test_a_422_blames_the_user_only_for_their_own_fields(loc: list[str], expected: str, not_expected: str) -> None:
    async def create(api: PrefectApi) -> Any:
        return await api.create_flow_run(uuid.uuid4(), parameters={}, tags=[], idempotency_key="k", labels={})

    with StandInPrefect("3.1.11") as stand_in:
        original = stand_in.answer

        def refuse(request: Received) -> Answer:
            if request.path.endswith("/create_flow_run"):
                return json_answer(422, refusal(loc))
            return original(request)

        stand_in.answer = refuse  # type: ignore[method-assign]
        with pytest.raises(PrefectError) as refused:
            session(stand_in, create)
    line = str(refused.value)
    assert expected in line and not_expected not in line, line


def test_a_burst_of_faults_at_the_start_gets_the_call_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three resets and two 503s on the first reads: the first contact keeps trying within the call's
    budget, as later calls do, where the client alone gave up after its attempts."""
    monkeypatch.setattr(prefect_api, "MAX_RETRIES", 0)  # the client gives up at once: the burst outlasts it
    monkeypatch.setattr(prefect_api, "FIRST_CONTACT_PAUSE_SECONDS", 0.05)
    burst: list[str | int] = ["reset", "reset", "reset", 503, 503]
    with StandInPrefect("3.9.1", faults=burst) as stand_in, pytest.raises(DeploymentNotFound):
        session(stand_in, read)  # it got through to the deployment
    assert stand_in.paths().count("/api/admin/version") == 6


def test_a_server_that_keeps_failing_ends_with_its_answer_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefect_api, "MAX_RETRIES", 0)
    monkeypatch.setattr(prefect_api, "CALL_BUDGET_SECONDS", 3.0)  # the client waits 2 s after each 503
    monkeypatch.setattr(prefect_api, "FIRST_CONTACT_PAUSE_SECONDS", 0.05)
    with StandInPrefect("3.9.1", faults=[503] * 1000) as stand_in:
        started = time.monotonic()
        with pytest.raises(PrefectError, match="answered 503 while reading deployment 'greet/ci'"):
            session(stand_in, read)
    assert time.monotonic() - started < 3.0 + 1.0
    assert len(stand_in.received) >= 2


def test_nothing_listening_fails_at_once() -> None:
    """A wrong URL is said at once, not after the budget."""

    async def main() -> None:
        async with PrefectApi(f"http://127.0.0.1:{free_port()}/api", NO_CREDENTIAL) as api:
            await read(api)

    started = time.monotonic()
    with pytest.raises(PrefectError, match="cannot reach"):
        asyncio.run(main())
    assert time.monotonic() - started < 5.0


def test_a_run_the_idempotency_key_found_is_not_new() -> None:
    async def create(api: PrefectApi) -> Any:
        return await api.create_flow_run(uuid.uuid4(), parameters={}, tags=[], idempotency_key="k", labels={})

    with StandInPrefect() as stand_in:
        stand_in.existing_run = True
        _, new = session(stand_in, create)
    assert new is False


def test_a_refused_request_names_the_credential_used_or_says_none_was_given() -> None:
    from pipe.credentials import Credential
    from pipe.secret import Secret

    class Refusing(StandInPrefect):
        def answer(self, request: Received) -> Answer:
            return json_answer(401, {"detail": "Unauthorized"})

    def refused(credential: Credential) -> str:
        async def main() -> None:
            async with PrefectApi(stand_in.api_url, credential) as api:
                await read(api)

        with pytest.raises(PrefectError) as caught:
            asyncio.run(main())
        return str(caught.value)

    with Refusing() as stand_in:
        assert "no credential was given" in refused(NO_CREDENTIAL)
        exchanged = Credential(
            "api_key", Secret("tok-123456"), "TOKEN_EXCHANGE_URL=https://gw.example.com/token (RFC 8693)"
        )
        text = refused(exchanged)
        assert "TOKEN_EXCHANGE_URL" in text and "PREFECT_API_KEY" not in text
        assert "Check that PREFECT_API_AUTH_STRING is current" in refused(
            Credential("auth_string", Secret("u:p-123456"), "PREFECT_API_AUTH_STRING")
        )
