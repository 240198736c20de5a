"""The gateway's image (``docker build --target gateway``): built from the same Dockerfile, started as a
deployment would start it (policy mounted, secrets in the environment), in front of the real server."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.container.conftest import build_image, docker, image_size, say
from tests.gateway.conftest import (  # noqa: F401 - issuer: the fixture
    SIGNING_KEY,
    LoopbackIssuer,
    bearer,
    issuer,
    leaked,
    policy_document,
)
from tests.support.prefect_server import AUTH_STRING, PrefectServer
from tests.support.processes import free_port

pytestmark = pytest.mark.container

ADDED_SIZE_BUDGET_MB = 60


@pytest.fixture(scope="module")
def gateway_image(
    base_image: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tag = f"prefect-trigger-gateway:pytest-{uuid.uuid4().hex[:8]}"
    seconds = build_image(base_image, tag, tmp_path_factory.mktemp("gateway-image") / "build.log", target="gateway")
    added = (image_size(tag) - image_size(base_image)) / 1e6
    say(request.config, f"built {tag} in {seconds:.0f}s: {added:.1f} MB over the base")
    assert added < ADDED_SIZE_BUDGET_MB
    try:
        yield tag
    finally:
        docker("image", "rm", tag, check=False)


def run_gateway(tag: str, policy: Path, port: int, env: dict[str, str]) -> str:
    args = ["docker", "run", "-d", "--rm", "--network", "host", "-v", f"{policy}:/etc/prefect-gateway/policy.yaml:ro"]
    for name in env:
        args += ["-e", name]
    args += [tag, "--policy", "/etc/prefect-gateway/policy.yaml", "--listen", f"127.0.0.1:{port}"]
    client_env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG") if k in os.environ}
    return subprocess.run(
        args, env={**client_env, **env}, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_image_without_secrets_exits_1_with_one_line(gateway_image: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: []\n")
    policy.chmod(0o644)
    done = docker("run", "--rm", "-v", f"{policy}:/etc/prefect-gateway/policy.yaml:ro", gateway_image, check=False)
    assert done.returncode == 1
    assert (
        done.stderr.strip() == "✖ PREFECT_GATEWAY_UPSTREAM_AUTH_STRING is not set; set it, or pass "
        "--upstream-auth-string-file, to the Prefect server's PREFECT_SERVER_API_AUTH_STRING"
    )


@pytest.mark.prefect
def test_image_serves_the_policy_in_front_of_the_real_server(
    gateway_image: str,
    issuer: LoopbackIssuer,  # noqa: F811 - the gateway tests' fixture
    prefect_server: PrefectServer,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_document(issuer, prefect_server.api_url)))
    policy.chmod(0o644)
    port = free_port()
    container = run_gateway(
        gateway_image,
        policy,
        port,
        {"PREFECT_GATEWAY_UPSTREAM_AUTH_STRING": AUTH_STRING, "PREFECT_GATEWAY_SIGNING_KEY": SIGNING_KEY},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        token = bearer(issuer.token())
        found = httpx.get(f"{url}/api/deployments/name/greet/ci", headers=token, timeout=10)
        assert found.status_code == 200 and found.json()["name"] == "ci"
        denied = httpx.post(f"{url}/api/variables/filter", json={}, headers=token, timeout=10)
        assert denied.status_code == 403
    finally:
        logs = docker("logs", container, check=False)
        docker("rm", "-f", container, check=False)
    assert '"decision":"allow"' in logs.stdout and '"decision":"deny"' in logs.stdout
    assert not leaked(logs.stdout + logs.stderr)
