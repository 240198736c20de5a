"""The gateway under uvicorn with its Prefect server down: what it refuses before forwarding (a corpus
of path and method tricks), what it answers when the server is unreachable, and the token endpoint.

Every refusal here must come without forwarding: a 502 would mean the gateway tried the server.
"""

from __future__ import annotations

import http.client

import httpx
import pytest

from tests.gateway.conftest import READER_REPO, GatewayProcess, LoopbackIssuer, bearer


def raw_request(
    gateway: GatewayProcess, method: str, path: str, token: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """A request whose path goes on the wire exactly as written (no client-side normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {**bearer(token), **(headers or {}), "Content-Length": "2"}.items():
            connection.putheader(name, value)
        connection.endheaders(b"{}")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


# (method, raw path, extra headers, expected status): reads of variables and blocks' documents are
# denied to a read-only identity; every trick to reach them must be refused the same way or earlier.
CORPUS = [
    ("POST", "/api/variables/filter", {}, 403),
    ("POST", "/api/VARIABLES/filter", {}, 403),
    ("POST", "/api/Variables/Filter/", {}, 403),
    ("POST", "/api/flows/../variables/filter", {}, 400),
    ("POST", "/api/flows/%2e%2e/variables/filter", {}, 400),
    ("POST", "/api/flows/%2E%2E/variables/filter", {}, 400),
    ("POST", "/api/./variables/filter", {}, 400),
    ("POST", "/api//variables/filter", {}, 400),
    ("POST", "//api/variables/filter", {}, 400),
    ("POST", "/api/variables%2ffilter", {}, 400),
    ("POST", "/api/variables%2Ffilter", {}, 400),
    ("POST", "/api/variables%5cfilter", {}, 400),
    ("POST", "/api/flows/%252e%252e/variables/filter", {}, 400),
    ("POST", "/api/flows/filter", {"X-HTTP-Method-Override": "DELETE"}, 400),
    ("POST", "/api/flows/filter", {"X-Method-Override": "DELETE"}, 400),
    ("POST", "/api/flows/filter", {"X-HTTP-Method": "PUT"}, 400),
    ("GET", "/api/block_documents/some-id", {}, 403),
    ("GET", "/api/block_types/slug/secret/block_documents/name/prod", {}, 403),
    ("POST", "/api/block_documents/filter?include_secrets=true", {}, 403),
    ("GET", "/api/flows/some-id?include_secrets=true", {}, 403),
    ("GET", "/api/flows/some-id?INCLUDE_SECRETS=1", {}, 403),
    ("DELETE", "/api/flows/some-id", {}, 403),
    ("PATCH", "/api/flow_runs/some-id", {}, 403),
    ("PUT", "/api/flows/filter", {}, 403),
    ("HEAD", "/api/flows/some-id", {}, 403),
    ("OPTIONS", "/api/flows/filter", {}, 403),
    ("TRACE", "/api/flows/filter", {}, 403),
    ("POST", "/api/admin/settings", {}, 403),
    ("GET", "/api/admin/settings", {}, 403),
    ("POST", "/api/deployments/x/create_flow_run/../../../variables/filter", {}, 400),
    ("GET", "/api/no/such/endpoint", {}, 403),
    ("GET", "/API/../healthz", {}, 400),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), CORPUS, ids=[f"{m} {p} {h}" for m, p, h, _ in CORPUS])
def test_path_and_method_tricks_are_refused_before_forwarding(
    gateway_without_upstream: GatewayProcess,
    issuer: LoopbackIssuer,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    got, body = raw_request(gateway_without_upstream, method, path, issuer.token(repositoryUuid=READER_REPO), headers)
    assert got == status, body


def test_an_allowed_request_to_a_server_that_is_down_is_a_clear_502(
    gateway_without_upstream: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    token = issuer.token(repositoryUuid=READER_REPO)
    answer = httpx.post(f"{gateway_without_upstream.url}/api/flows/filter", json={}, headers=bearer(token), timeout=30)
    assert answer.status_code == 502
    assert answer.json()["detail"].startswith("bad gateway: the Prefect server behind the gateway did not answer")
    ready = httpx.get(f"{gateway_without_upstream.url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json() == {"upstream": "unreachable"}
    assert httpx.get(f"{gateway_without_upstream.url}/healthz", timeout=10).status_code == 200
    line = gateway_without_upstream.audit_lines()[-1]
    assert line["decision"] == "error" and line["status"] == 502 and line["reason"].startswith("upstream: Connect")


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic YWRtaW46cHc=", "Bearer", "Bearer not-a-jwt"],
    ids=["none", "basic", "empty-bearer", "garbage"],
)
def test_requests_without_a_valid_bearer_token_are_401(
    gateway_without_upstream: GatewayProcess, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx.get(f"{gateway_without_upstream.url}/api/health", headers=headers, timeout=10)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["detail"].startswith("unauthorized: ")


def test_a_token_no_rule_matches_is_refused_with_its_claims(
    gateway_without_upstream: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    stranger = "{00000000-0000-4000-8000-000000000000}"
    answer = httpx.get(
        f"{gateway_without_upstream.url}/api/health", headers=bearer(issuer.token(repositoryUuid=stranger)), timeout=10
    )
    assert answer.status_code == 403
    assert answer.json()["claims"]["repositoryUuid"] == stranger and answer.json()["rules"] == []
    exchange = httpx.post(
        f"{gateway_without_upstream.url}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": issuer.token(repositoryUuid=stranger),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        },
        timeout=10,
    )
    assert exchange.status_code == 403 and exchange.json()["error"] == "access_denied"
    assert f"repositoryUuid={stranger}" in exchange.json()["error_description"]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange"}, "invalid_request"),
        (
            {
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": "not-a-jwt",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            },
            "invalid_grant",
        ),
    ],
    ids=["grant-type", "no-subject", "bad-subject"],
)
def test_token_endpoint_errors_are_oauth_json(
    gateway_without_upstream: GatewayProcess, form: dict[str, str], error: str
) -> None:
    answer = httpx.post(f"{gateway_without_upstream.url}/token", data=form, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == error
    assert answer.headers["cache-control"] == "no-store"


def test_an_auth_string_carrying_the_token_is_accepted_and_the_servers_own_is_not(
    gateway_without_upstream: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    import base64

    from tests.support.prefect_server import AUTH_STRING

    def basic(text: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}

    url = f"{gateway_without_upstream.url}/api/flows/filter"
    carried = httpx.post(url, json={}, headers=basic(f"bearer:{issuer.token(repositoryUuid=READER_REPO)}"), timeout=30)
    assert carried.status_code == 502  # identified, allowed, forwarded (the server is down)
    admin = httpx.post(url, json={}, headers=basic(AUTH_STRING), timeout=10)
    assert admin.status_code == 401 and "not a JWT" in admin.json()["detail"]


def test_the_tables_stream_name_is_not_an_http_method(
    gateway_without_upstream: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    got, body = raw_request(
        gateway_without_upstream, "WEBSOCKET", "/api/events/out", issuer.token(repositoryUuid=READER_REPO), {}
    )
    # uvicorn's parser already refuses the method (400); the gateway refuses it too (405) where one would not.
    assert got in (400, 405), body
