"""Fixtures of the gateway tests: a loopback OIDC issuer (discovery + JWKS over http), the gateway under
real uvicorn as a subprocess (``python -m gateway``), in front of the session's real Prefect server.

The issuer signs with :class:`tests.identity.issuer.Issuer`'s RSA key; its ``iss`` is its loopback URL.
Every gateway started here writes its output (the audit lines) to a file that the leak scan reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

from tests.identity.issuer import KEY_ID, Issuer
from tests.support.pipe import BITBUCKET_ENV, ROOT
from tests.support.prefect_server import AUTH_STRING, PrefectServer
from tests.support.processes import free_port

AUDIENCE = "prefect-gateway.test.example"
REPO = BITBUCKET_ENV["BITBUCKET_REPO_UUID"]
OTHER_REPO = "{9f9f9f9f-0000-4000-8000-0000000000ff}"
READER_REPO = "{7e7e7e7e-0000-4000-8000-0000000000ee}"
ENVIRONMENT = "{2222aaaa-0000-4000-8000-000000000022}"
SIGNING_KEY = "gateway-test-signing-key-" + "k" * 40
GATEWAY_OUTPUTS: list[Path] = []  # every gateway's output file, for the leak scan


class LoopbackIssuer:
    """Bitbucket-shaped step tokens, with discovery and JWKS served over http on loopback."""

    def __init__(self) -> None:
        self.signer = Issuer()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/2.0/workspaces/acme/pipelines-config/identity/oidc"
        self.jwks_fetches = 0
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.signer.public_key))
        self.jwks = {"keys": [{**public, "kid": KEY_ID, "use": "sig", "alg": "RS256"}]}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/.well-known/openid-configuration"):
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/keys.json"}
                elif self.path.endswith("/keys.json"):
                    issuer.jwks_fetches += 1
                    body = issuer.jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return self.signer.claims(**{"iss": self.url, "aud": AUDIENCE, **overrides})

    def token(self, **overrides: Any) -> str:
        return self.signer.token(**{"iss": self.url, "aud": AUDIENCE, **overrides})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def policy_document(issuer: LoopbackIssuer, upstream: str) -> dict[str, Any]:
    return {
        "issuer": issuer.url,
        "audiences": [AUDIENCE],
        "upstream": upstream,
        "rules": [
            {
                "name": "pipes: every branch",
                "when": {"repositoryUuid": REPO},
                "allow": {"read": True, "run": ["greet/ci"]},
            },
            {
                "name": "pipes: main",
                "when": {"repositoryUuid": REPO, "branchName": "main"},
                "allow": {"read": True, "run": ["greet/*", "sleepy/*", "fail/*"], "deploy": ["gateway-deploy/*"]},
            },
            {
                "name": "pipes: production",
                "when": {"repositoryUuid": REPO, "deploymentEnvironmentUuid": ENVIRONMENT},
                "allow": {"run": ["crash/ci"]},
            },
            {"name": "reader", "when": {"repositoryUuid": READER_REPO}, "allow": {"read": True}},
            {
                "name": "other repository",
                "when": {"repositoryUuid": OTHER_REPO},
                "allow": {"read": True, "run": ["fail/ci"]},
            },
        ],
    }


@dataclass
class GatewayProcess:
    port: int
    output: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def audit_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.output.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_gateway(
    policy: dict[str, Any], directory: Path, *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> GatewayProcess:
    directory.mkdir(parents=True, exist_ok=True)
    policy_file = directory / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy, sort_keys=False))
    port = free_port()
    output = directory / f"gateway-{port}.log"
    GATEWAY_OUTPUTS.append(output)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(
        PYTHONPATH=str(ROOT),
        PREFECT_GATEWAY_UPSTREAM_AUTH_STRING=AUTH_STRING,
        PREFECT_GATEWAY_SIGNING_KEY=SIGNING_KEY,
        **(extra_env or {}),
    )
    args = [sys.executable, "-m", "gateway", "--policy", str(policy_file), "--listen", f"127.0.0.1:{port}"]
    if workers > 1:
        args += ["--workers", str(workers)]
    with output.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
    gateway = GatewayProcess(port, output, process, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}:\n{output.read_text()}")
        try:
            if httpx.get(f"{gateway.url}/healthz", timeout=1).status_code == 200:
                return gateway
        except httpx.HTTPError:
            time.sleep(0.1)
    gateway.stop()
    raise RuntimeError(f"the gateway did not answer /healthz:\n{output.read_text()}")


@pytest.fixture(scope="session")
def issuer() -> Iterator[LoopbackIssuer]:
    server = LoopbackIssuer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway(
    prefect_server: PrefectServer, issuer: LoopbackIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """The gateway in front of the session's Prefect server (two uvicorn workers, as in production)."""
    process = start_gateway(
        policy_document(issuer, prefect_server.api_url), tmp_path_factory.mktemp("gateway"), workers=2
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def gateway_without_upstream(
    issuer: LoopbackIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway whose Prefect server is down (nothing listens on its port)."""
    process = start_gateway(
        policy_document(issuer, f"http://127.0.0.1:{free_port()}/api"), tmp_path_factory.mktemp("gateway-down")
    )
    try:
        yield process
    finally:
        process.stop()


def session_token(gateway: GatewayProcess, subject: str) -> str:
    response = httpx.post(
        f"{gateway.url}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def leaked(text: str) -> list[str]:
    """Which of the gateway's secrets (in any form Prefect or HTTP would carry them) appear in ``text``."""
    import base64

    password = AUTH_STRING.split(":", 1)[1]
    forms = {
        "auth string": AUTH_STRING,
        "password": password,
        "basic credential": base64.b64encode(AUTH_STRING.encode()).decode(),
        "signing key": SIGNING_KEY,
    }
    return [name for name, value in forms.items() if value in text]


@pytest.fixture(scope="session", autouse=True)
def gateway_outputs_never_hold_a_secret() -> Iterator[None]:
    """After the session: no gateway's output (audit lines, server log) holds the auth string or key."""
    yield
    for output in GATEWAY_OUTPUTS:
        if output.exists():
            assert not leaked(output.read_text(errors="replace")), f"a secret leaked into {output}"


def gateway_env(pipe_env: dict[str, str], gateway: GatewayProcess, oidc_token: str) -> dict[str, str]:
    """The step of the README: no Prefect secret, only the step's OIDC token and the gateway's URLs."""
    env = {k: v for k, v in pipe_env.items() if k != "PREFECT_API_AUTH_STRING"}
    env.update(
        PREFECT_API_URL=f"{gateway.url}/api",
        TOKEN_EXCHANGE_URL=f"{gateway.url}/token",
        BITBUCKET_STEP_OIDC_TOKEN=oidc_token,
    )
    return env
