"""The real pipe and Prefect's own clients through the real gateway in front of the real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import (
    ENVIRONMENT,
    OTHER_REPO,
    READER_REPO,
    GatewayProcess,
    LoopbackIssuer,
    bearer,
    gateway_env,
    session_token,
)
from tests.support.pipe import run_pipe
from tests.support.prefect_server import PrefectInspector

pytestmark = pytest.mark.prefect


@pytest.mark.prefect
def test_pipe_runs_waits_and_streams_logs_through_the_gateway(
    pipe_env: dict[str, str], gateway: GatewayProcess, issuer: LoopbackIssuer, prefect: PrefectInspector
) -> None:
    step_token = issuer.token(stepUuid=pipe_env["BITBUCKET_STEP_UUID"])
    env = gateway_env(pipe_env, gateway, step_token)
    # Prefect's stream clients send a null token in their auth message when they hold an API key and
    # the server is not Prefect Cloud: the pipe puts the exchanged token in the handshake's header itself.
    result = run_pipe(env)
    assert result.code == 0, result
    assert "hello world #0" in result.output and "hello world #1" in result.output, result
    assert "last line of greet" in result.output, result
    audit = gateway.audit_lines()
    created = [a for a in audit if a["path"].endswith("/create_flow_run") and a["decision"] == "allow"]
    assert created, audit[-10:]
    line = created[-1]
    assert line["deployment"] == "greet/ci" and line["upstream_status"] == 201
    assert line["claims"]["stepUuid"] == pipe_env["BITBUCKET_STEP_UUID"]
    assert "pipes: main" in line["rules"]
    run = prefect.flow_run(line["flow_run"])
    assert run.state.type.value == "COMPLETED"
    streams = [
        a
        for a in audit
        if a["method"] == "WEBSOCKET" and a["claims"].get("stepUuid") == pipe_env["BITBUCKET_STEP_UUID"]
    ]
    assert {a["path"] for a in streams} >= {"/api/events/out", "/api/logs/out"}, streams
    assert all(a["decision"] == "allow" for a in streams), streams


@pytest.mark.prefect
def test_another_repository_cannot_run_this_repositorys_deployment(
    pipe_env: dict[str, str], gateway: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    env = gateway_env(pipe_env, gateway, issuer.token(repositoryUuid=OTHER_REPO))
    result = run_pipe(env, timeout=120)
    assert result.code == 1, result
    assert "the gateway denied this step the right 'run: greet/ci'" in result.output, result
    assert OTHER_REPO in result.output, result  # the claims seen, so the policy can be fixed
    assert "DRY_RUN: 'true' prints the rule this step needs" in result.output, result
    assert "service account" not in result.output, result  # Prefect Cloud's fix is not this one


@pytest.mark.prefect
def test_read_only_identity_reads_but_cannot_create_or_cancel(
    gateway: GatewayProcess, issuer: LoopbackIssuer, prefect: PrefectInspector
) -> None:
    reader = bearer(issuer.token(repositoryUuid=READER_REPO))
    api = f"{gateway.url}/api"
    deployment = httpx.get(f"{api}/deployments/name/greet/ci", headers=reader, timeout=10)
    assert deployment.status_code == 200, deployment.text
    deployment_id = deployment.json()["id"]
    created = httpx.post(f"{api}/deployments/{deployment_id}/create_flow_run", json={}, headers=reader, timeout=10)
    assert created.status_code == 403, created.text
    assert created.json()["missing_right"] == "run: greet/ci"
    assert created.json()["claims"]["repositoryUuid"] == READER_REPO
    runs = prefect.flow_runs("greet/ci")
    assert runs, "the pipe test above created runs of greet/ci"
    cancel = httpx.post(
        f"{api}/flow_runs/{runs[0].id}/set_state", json={"state": {"type": "CANCELLING"}}, headers=reader, timeout=10
    )
    assert cancel.status_code == 403, cancel.text
    assert cancel.json()["missing_right"] == "run: greet/ci"
    listed = httpx.post(f"{api}/flow_runs/filter", json={"limit": 1}, headers=reader, timeout=10)
    assert listed.status_code == 200 and len(listed.json()) == 1


@pytest.mark.prefect
def test_run_right_without_read_is_scoped_to_its_deployment(gateway: GatewayProcess, issuer: LoopbackIssuer) -> None:
    """The production rule grants run of crash/ci only; a pull-request branch with that environment
    also matches the every-branch rule (read, run greet/ci), and nothing grants fail/ci."""
    token = bearer(issuer.token(branchName="feature/x", deploymentEnvironmentUuid=ENVIRONMENT))
    api = f"{gateway.url}/api"
    fail = httpx.get(f"{api}/deployments/name/fail/ci", headers=token, timeout=10).json()
    refused = httpx.post(f"{api}/deployments/{fail['id']}/create_flow_run", json={}, headers=token, timeout=10)
    assert refused.status_code == 403 and refused.json()["missing_right"] == "run: fail/ci"
    assert set(refused.json()["rules"]) == {"pipes: every branch", "pipes: production"}


@pytest.mark.prefect
def test_session_token_of_one_replica_is_accepted_by_another(
    gateway: GatewayProcess, issuer: LoopbackIssuer, prefect_server: object, tmp_path: Path
) -> None:
    from tests.gateway.conftest import policy_document, start_gateway

    replica = start_gateway(policy_document(issuer, gateway_upstream(gateway)), tmp_path / "replica-b")
    try:
        token = session_token(gateway, issuer.token())
        answer = httpx.post(
            f"{replica.url}/api/deployments/filter", json={"limit": 1}, headers=bearer(token), timeout=10
        )
        assert answer.status_code == 200, answer.text
        # A session token is not a subject token: it cannot be exchanged again.
        again = httpx.post(
            f"{replica.url}/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": token,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            },
            timeout=10,
        )
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
    finally:
        replica.stop()


def gateway_upstream(gateway: GatewayProcess) -> str:
    import yaml

    policy = yaml.safe_load((gateway.output.parent / "policy.yaml").read_text())
    return str(policy["upstream"])


@pytest.mark.prefect
def test_the_upstream_credential_never_appears_in_answers_or_audit_lines(
    gateway: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    from tests.gateway.conftest import leaked

    api = f"{gateway.url}/api"
    reader = bearer(issuer.token(repositoryUuid=READER_REPO))
    main = bearer(session_token(gateway, issuer.token()))
    answers = [
        httpx.get(f"{api}/health", headers=main, timeout=10),
        httpx.get(f"{api}/admin/settings", headers=main, timeout=10),
        httpx.post(f"{api}/flow_runs/filter", json={"limit": 5}, headers=reader, timeout=10),
        httpx.post(f"{api}/variables/filter", json={}, headers=main, timeout=10),
        httpx.get(f"{api}/deployments/name/greet/ci", headers=main, timeout=10),
        httpx.post(f"{api}/flows/filter", content=b"{not json", headers=main, timeout=10),
        httpx.get(f"{api}/flows/not-a-uuid", headers=main, timeout=10),
        httpx.get(f"{gateway.url}/readyz", timeout=10),
        httpx.get(f"{api}/health", headers=bearer("x.y.z"), timeout=10),
    ]
    assert [a.status_code for a in answers][:5] == [200, 403, 200, 403, 200]
    for answer in answers:
        text = answer.text + json.dumps(dict(answer.headers))
        assert not leaked(text), (answer.request.url, leaked(text))
    assert not leaked(gateway.output.read_text()), "a secret leaked into the gateway's output"


@pytest.mark.prefect
def test_the_pipe_identifies_its_streams_with_the_exchanged_token(
    pipe_env: dict[str, str], gateway: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    """Prefect's stream clients send a null token with an API key; the pipe puts the key in the
    handshake's header, so the gateway can tell who streams with no extra variable on the step."""
    env = gateway_env(pipe_env, gateway, issuer.token(stepUuid=pipe_env["BITBUCKET_STEP_UUID"]))
    before = len(gateway.audit_lines())
    result = run_pipe(env)
    assert result.code == 0, result
    assert "hello world #1" in result.output and "last line of greet" in result.output, result
    streams = [a for a in gateway.audit_lines()[before:] if a["method"] == "WEBSOCKET"]
    assert {a["path"] for a in streams if a["decision"] == "allow"} >= {"/api/events/out", "/api/logs/out"}, streams
    assert not [a for a in streams if a.get("reason", "").startswith("no token")], streams


@pytest.mark.prefect
def test_streams_are_relayed_and_closed_cleanly_on_shutdown(
    gateway: GatewayProcess, issuer: LoopbackIssuer, tmp_path: Path
) -> None:
    import asyncio
    import time

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from tests.gateway.conftest import policy_document, start_gateway

    replica = start_gateway(policy_document(issuer, gateway_upstream(gateway)), tmp_path / "shutdown")

    async def scenario() -> tuple[str, int | None, float]:
        url = f"ws://127.0.0.1:{replica.port}/api/events/out"
        async with connect(url, subprotocols=["prefect"], proxy=None) as stream:  # type: ignore[list-item]
            await stream.send(json.dumps({"type": "auth", "token": issuer.token()}))
            answer = json.loads(await asyncio.wait_for(stream.recv(), 10))
            await stream.send(json.dumps({"type": "filter", "filter": {"event": {"prefix": ["prefect.flow-run."]}}}))
            started = time.monotonic()
            replica.process.terminate()
            try:
                await asyncio.wait_for(stream.recv(), 20)
            except ConnectionClosed as closed:
                return answer["type"], closed.rcvd.code if closed.rcvd else None, time.monotonic() - started
            return answer["type"], None, time.monotonic() - started

    try:
        kind, code, seconds = asyncio.run(scenario())
        assert kind == "auth_success"
        # uvicorn sends close 1012 (service restart) and closes the transport right after, so a loaded
        # client may see the connection end before it reads the frame: either way the stream ends.
        assert code in (None, 1000, 1001, 1012), code
        # uvicorn re-raises the signal it handled once the graceful shutdown is done.
        assert replica.process.wait(timeout=20) in (0, -15)
        assert seconds < 16
        assert "Traceback" not in replica.output.read_text()
    finally:
        replica.stop()
    line = [a for a in replica.audit_lines() if a["method"] == "WEBSOCKET"][-1]
    assert line["decision"] == "allow" and line["path"] == "/api/events/out" and line["upstream_status"] == 101


@pytest.mark.prefect
def test_the_pipe_unchanged_with_the_step_token_as_auth_string_streams_through_the_gateway(
    pipe_env: dict[str, str], gateway: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    """PREFECT_API_AUTH_STRING=bearer:<step token>: Prefect sends it as HTTP Basic and as the streams'
    auth token, so both carry the step's identity without a token exchange or extra headers."""
    env = dict(pipe_env, PREFECT_API_URL=f"{gateway.url}/api")
    env["PREFECT_API_AUTH_STRING"] = "bearer:" + issuer.token(stepUuid=pipe_env["BITBUCKET_STEP_UUID"])
    before = len(gateway.audit_lines())
    result = run_pipe(env)
    assert result.code == 0, result
    assert "hello world #1" in result.output and "last line of greet" in result.output, result
    step = pipe_env["BITBUCKET_STEP_UUID"]
    audit = gateway.audit_lines()[before:]
    streams = [a for a in audit if a["method"] == "WEBSOCKET" and a["claims"].get("stepUuid") == step]
    assert {a["path"] for a in streams} >= {"/api/events/out", "/api/logs/out"}, streams
    assert all(a["decision"] == "allow" for a in streams), streams
