"""`prefect deploy` (Prefect's own CLI) through the gateway: allowed on main, refused on a pull-request
branch. The endpoints it calls are pinned here, so a Prefect upgrade that needs another one shows up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway.conftest import GatewayProcess, LoopbackIssuer, session_token
from tests.support.prefect_server import PrefectServer

FLOW = """\
from prefect import flow


@flow(name="gateway-deploy")
def deployed() -> str:
    return "deployed through the gateway"
"""

PREFECT_YAML = """\
name: gateway-deploy-tests
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{directory}"
deployments:
  - name: {name}
    entrypoint: flow.py:deployed
    work_pool:
      name: {pool}
"""

# What `prefect --no-prompt deploy --name N` of a process-pool deployment asks of the API (Prefect 3.9.1),
# as seen by the gateway. It clears the deployment's own automations (its triggers) even when it has none.
DEPLOY_ENDPOINTS = {
    ("GET", "/api/work_pools/{pool}"),
    ("GET", "/api/deployments/name/gateway-deploy/{name}"),
    ("GET", "/api/csrf-token"),
    ("POST", "/api/flows/"),
    ("POST", "/api/deployments/"),
    ("DELETE", "/api/automations/owned-by/prefect.deployment.{id}"),
    ("POST", "/api/work_pools/{pool}/workers/filter"),
}


def prefect_deploy(
    project: Path, server: PrefectServer, gateway: GatewayProcess, key: str
) -> subprocess.CompletedProcess[str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(
        PREFECT_HOME=str(project / ".prefect-home"),
        PREFECT_API_URL=f"{gateway.url}/api",
        PREFECT_API_KEY=key,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
    )
    prefect = str(Path(sys.executable).parent / "prefect")
    return subprocess.run(
        [prefect, "--no-prompt", "deploy", "--name", project.name],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def project(tmp_path: Path, name: str, pool: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "flow.py").write_text(FLOW)
    (path / "prefect.yaml").write_text(PREFECT_YAML.format(directory=path, name=name, pool=pool))
    return path


@pytest.mark.prefect
def test_deploy_is_allowed_on_main_and_refused_on_a_pull_request_branch(
    prefect_server: PrefectServer, gateway: GatewayProcess, issuer: LoopbackIssuer, tmp_path: Path
) -> None:
    main = project(tmp_path, "from-main", prefect_server.pool)
    before = len(gateway.audit_lines())
    done = prefect_deploy(main, prefect_server, gateway, session_token(gateway, issuer.token()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gateway-deploy/from-main" in done.stdout
    audit = gateway.audit_lines()[before:]
    created = [a for a in audit if a["path"] == "/api/deployments/"]
    calls = {(a["method"], a["path"]) for a in audit if a["decision"] == "allow" and a["path"] != "/token"}
    expected = {(m, p.format(pool=prefect_server.pool, name="from-main", id="")) for m, p in DEPLOY_ENDPOINTS}
    assert {(m, p.rsplit(".", 1)[0] + "." if "owned-by" in p else p) for m, p in calls} == expected, sorted(calls)
    assert created[-1]["deployment"] == "gateway-deploy/from-main" and created[-1]["upstream_status"] in (200, 201)
    assert not [a for a in audit if a["decision"] != "allow"], [a for a in audit if a["decision"] != "allow"]

    branch = project(tmp_path, "from-branch", prefect_server.pool)
    refused = prefect_deploy(
        branch, prefect_server, gateway, session_token(gateway, issuer.token(branchName="feature/x"))
    )
    assert refused.returncode != 0, refused.stdout
    assert "deploy: gateway-deploy/*" in refused.stdout + refused.stderr
