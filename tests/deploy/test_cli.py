"""Running `prefect deploy`: its environment, its output, and stopping it."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from pipe.deploy.cli import run_cli
from tests.deploy.repo import PREFECT_YAML, Repo, deploy_env, deploy_with
from tests.support.leaks import assert_no_secrets
from tests.support.prefect_server import PrefectServer


@pytest.mark.prefect
def test_cli_environment_is_minimal_and_its_output_masked(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    """A build step prints the environment `prefect deploy` runs in: what the step handed the pipe, the
    pipe's Prefect settings pinned (a prefect.toml and a .env in the clone change nothing), never the
    pipe's Bitbucket credentials."""
    yaml_text = PREFECT_YAML.format(a=repo.a, b=repo.b).replace(
        "deployments:",
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      script: env\n"
        "  - prefect.deployments.steps.run_shell_script:\n      script: echo stage={{ $STAGE }}\n"
        "  - prefect.deployments.steps.run_shell_script:\n      script: echo login={{ $REGISTRY_PASSWORD }}\n"
        "deployments:",
    )
    repo.write("prefect.toml", '[api]\nurl = "http://127.0.0.1:9/api"\ntls_insecure_skip_verify = true\n')
    repo.write(".env", "PREFECT_API_AUTH_STRING=someone:else\nPREFECT_API_TLS_INSECURE_SKIP_VERIFY=true\n")
    sha = repo.standard(prefect_yaml=yaml_text)
    env = deploy_env(
        pipe_env,
        repo,
        sha,
        DEPLOYMENT=f"pinned-code/{repo.b}",
        STAGE="staging-7",  # named by the prefect.yaml: passed on
        UNRELATED_SETTING="for-the-project",  # handed to the pipe, so meant for the project: passed on
        REGISTRY_PASSWORD="registry-pass-5678",  # the user's own secret: passed on, masked
        BITBUCKET_STEP_OIDC_TOKEN="eyJ.fake-oidc-token.sig",  # secret by name: stays behind
        BITBUCKET_ACCESS_TOKEN="fake-access-token-1234",
    )
    assert deploy_with(env) == [f"pinned-code/{repo.b}"]
    out = capfd.readouterr().out
    assert f"BITBUCKET_COMMIT={sha}" in out  # Prefect derives version info from these
    assert "BITBUCKET_BRANCH=main" in out
    assert "PREFECT_API_AUTH_STRING=***" in out  # passed, and masked in the build log
    assert f"PREFECT_API_URL={prefect_server.api_url}" in out
    assert "PREFECT_API_TLS_INSECURE_SKIP_VERIFY=false" in out
    assert "stage=staging-7" in out
    assert "NO_COLOR=1" in out and "PREFECT_CLI_PROMPT=false" in out
    assert "UNRELATED_SETTING=for-the-project" in out
    assert "REGISTRY_PASSWORD=***" in out and "login=***" in out
    assert "registry-pass-5678" not in out
    assert "BITBUCKET_STEP_OIDC_TOKEN" not in out and "fake-oidc-token" not in out
    assert "BITBUCKET_ACCESS_TOKEN" not in out and "fake-access-token" not in out
    assert_no_secrets(out, prefect_server.auth_string)


def test_cli_is_stopped_at_timeout_and_on_cancel(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    started = time.monotonic()
    result = run_cli(sleeper, {"PATH": "/usr/bin:/bin"}, tmp_path, timeout=1.5, debug=False)
    assert result.timed_out and result.code is None
    assert result.output.lines == ["started"]
    assert time.monotonic() - started < 10

    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = run_cli(sleeper, {"PATH": "/usr/bin:/bin"}, tmp_path, timeout=60, debug=False, cancel=cancel)
    assert result.cancelled and not result.timed_out
    assert time.monotonic() - started < 10
