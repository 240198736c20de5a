"""A git repository made by a test — the clone a Bitbucket step would have — and deploying from it.

Each test makes its own repository in tmp_path (a flow, a prefect.yaml whose git_clone pull step pins
the worker to `{{ $BITBUCKET_COMMIT }}`, cloning the repository by its path) and deploys it under
names of its own, so tests never see each other's deployments.
"""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from pathlib import Path
from typing import Any

from pipe.auth import authenticate
from pipe.config import DeploymentRef, Target, load
from pipe.deploy import deploy
from tests.support.pipe import PipeResult
from tests.support.prefect_server import PrefectServer

FLOW = '''\
from prefect import flow, get_run_logger


@flow(name="pinned-code")
def run_pinned() -> str:
    """A flow whose registered name differs from its function's."""
    get_run_logger().info("code marker: {marker}")
    return "{marker}"


@flow
def other_flow() -> None:
    get_run_logger().info("other flow")
'''

PREFECT_YAML = """\
name: deploy-tests
pull:
  - prefect.deployments.steps.git_clone:
      repository: "{{{{ $BITBUCKET_CLONE_DIR }}}}"
      commit_sha: "{{{{ $BITBUCKET_COMMIT }}}}"
deployments:
  - name: {a}
    entrypoint: flows/pinned.py:run_pinned
    tags: [mine]
    work_pool:
      name: pipe-tests
  - name: {b}
    entrypoint: flows/pinned.py:run_pinned
    work_pool:
      name: pipe-tests
  - name: {a}
    entrypoint: flows/pinned.py:other_flow
    work_pool:
      name: pipe-tests
"""


class Repo:
    """A git repository made by the test: the clone a Bitbucket step would have."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "tests@example.com")
        self.git("config", "user.name", "tests")
        suffix = uuid.uuid4().hex[:8]
        self.a, self.b = f"ci-{suffix}", f"prod-{suffix}"

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, check=True, timeout=30
        )
        return done.stdout.strip()

    def write(self, relative: str, text: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def standard(self, marker: str = "v1", prefect_yaml: str | None = None) -> str:
        self.write("flows/pinned.py", FLOW.format(marker=marker))
        self.write("prefect.yaml", prefect_yaml or PREFECT_YAML.format(a=self.a, b=self.b))
        return self.commit(f"code {marker}")


def deploy_env(pipe_env: dict[str, str], repo: Repo, sha: str, **extra: str) -> dict[str, str]:
    env = {**pipe_env, "ACTION": "deploy", "BITBUCKET_CLONE_DIR": str(repo.path), "BITBUCKET_COMMIT": sha, **extra}
    if "DEPLOYMENT" not in extra:
        env.pop("DEPLOYMENT", None)
    return env


def deploy_with(env: dict[str, str], deployment: str | None = None) -> list[str]:
    """deploy() exactly as run.py calls it: a Config from the variables and the step's credential."""
    config = load(env)
    if deployment is not None:  # shapes config.parse_deployment does not accept yet (bare names)
        config = dataclasses.replace(config, targets=[Target(DeploymentRef(deployment))])
    credential = authenticate(config)
    try:
        return deploy(config, credential)
    finally:
        credential.close()


def read_deployment(server: PrefectServer, name: str) -> Any | None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.exceptions import ObjectNotFound

    with SyncPrefectClient(server.api_url, auth_string=server.auth_string) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


def assert_clean_failure(result: PipeResult, *expected: str) -> str:
    """Exit 1 with one ✖ line holding each of ``expected``, and no traceback; the line."""
    assert result.code == 1, result
    line = fail_line(result.output)
    for text in expected:
        assert text in line, result
    assert "Traceback" not in result.output, result
    return line


def fail_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "✖" in line]
    assert len(lines) == 1, output
    return lines[0]
