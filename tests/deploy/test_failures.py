"""A failed `prefect deploy` as one line: Prefect's own message and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipe.deploy.cli import CliOutput
from pipe.deploy.failures import failure
from pipe.errors import DeployError
from tests.deploy.repo import PREFECT_YAML, Repo, deploy_env, deploy_with, read_deployment
from tests.support.prefect_server import PrefectServer

MISSING_FLOW_OUTPUT = """\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/utilities/importtools.py", line 180, in import_object
    obj = getattr(obj, part)
          ^^^^^^^^^^^^^^^^^^
AttributeError: module 'hello' has no attribute 'nope'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/flows.py", line 3003, in load_flow_from_entrypoint
    raise MissingFlowError(
prefect.exceptions.MissingFlowError: Flow function with name 'nope' not found in 'flows/hello.py'.
An exception occurred.
"""

UNAUTHORIZED_OUTPUT = """\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/client/base.py", line 181, in raise_for_status
    raise PrefectHTTPStatusError.from_httpx_error(exc) from exc.__cause__
prefect.exceptions.PrefectHTTPStatusError: Client error '403 Forbidden' for url 'https://api.prefect.cloud/api/accounts/a/workspaces/w/deployments/' - Response: {'detail': 'forbidden'} - For more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/403
An exception occurred.
"""

WORK_POOL_OUTPUT = """\
Deploying all flows with an existing deployment configuration...
╭──────────────────────────────────────╮
│ Deploying c                          │
╰──────────────────────────────────────╯
This deployment configuration references work pool 'no-such-pool' which does not exist. This means no worker will be able to pick up its runs. You can create a work pool in the Prefect UI.
"""

CLAIMS = (
    "repositoryUuid={1b2c3d4e-0000-4000-8000-000000000001}, branchName=feature/new-etl, "
    "pipelineUuid={aaaaaaaa-0000-4000-8000-000000000002}, stepUuid={bbbbbbbb-0000-4000-8000-000000000003}, "
    "sub={1b2c3d4e-0000-4000-8000-000000000001}:{bbbbbbbb-0000-4000-8000-000000000003}"
)
DENIED = (
    "denied: this request needs the right 'deploy: etl/nightly'; claims seen: " + CLAIMS + "; the rules matching "
    "them (pull requests) do not grant it; add a rule for these claims to the gateway's policy"
)
# What Prefect 3.9's `prefect deploy` printed when the gateway refused it.
GATEWAY_DENIED_OUTPUT = f"""\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/deployments/runner.py", line 412, in _create
    raise DeploymentApplyError(
prefect.exceptions.PrefectHTTPStatusError: Client error '403 Forbidden' for url 'https://gw.example.com/api/deployments/' - Response: {{'detail': "{DENIED}"}} - For more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/403
prefect.deployments.runner.DeploymentApplyError: {DENIED}
An exception occurred.
"""


@pytest.mark.parametrize(
    ("output", "message", "fix"),
    [
        (
            MISSING_FLOW_OUTPUT,
            "prefect deploy failed (exit 1): MissingFlowError: Flow function with name 'nope' not found in 'flows/hello.py'.",
            "Fix the entrypoint in prefect.yaml",
        ),
        (
            UNAUTHORIZED_OUTPUT,
            "PrefectHTTPStatusError: Client error '403 Forbidden' for url 'https://api.prefect.cloud/api/accounts/a/workspaces/w/deployments/' - Response: {'detail': 'forbidden'}.",
            "role Developer",
        ),
        (
            WORK_POOL_OUTPUT,
            "prefect deploy failed (exit 1): This deployment configuration references work pool 'no-such-pool' which does not exist.",
            "Create the work pool (e.g. 'prefect work-pool create no-such-pool --type process')",
        ),
        (
            GATEWAY_DENIED_OUTPUT,
            "prefect deploy failed (exit 1): the gateway denied this step the right 'deploy: etl/nightly' (claims: "
            "repositoryUuid={1b2c3d4e-0000-4000-8000-000000000001}, branchName=feature/new-etl; the rules matching "
            "them (pull requests) do not grant it).",
            "Add a rule granting it for these claims to the gateway's policy (DRY_RUN: 'true' prints the rule",
        ),
    ],
    ids=["missing flow", "forbidden", "work pool", "gateway denied"],
)
def test_failure_line_from_prefects_output(
    output: str, message: str, fix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real outputs of Prefect 3.9's `prefect deploy`, reduced to one line."""
    cli = CliOutput(debug=False)
    for line in output.splitlines():
        cli.feed(line)
    line = failure(cli, "prefect.yaml", 1).line()
    assert message in line, line
    assert fix in line, line
    assert "\n" not in line and "For more information" not in line
    shown = capsys.readouterr().out
    assert "Traceback" not in shown and "File " not in shown and "╭" not in shown
    assert shown.count("prefect deploy │") == len([x for x in shown.splitlines() if x.strip()])


CRON_OUTPUT = """\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/cli/deploy/_core.py", line 330, in _run_single_deploy
    deploy_config["schedules"] = _construct_schedules(
pydantic_core._pydantic_core.ValidationError: 1 validation error for CronSchedule
cron
  Value error, Invalid cron string: "0 25 * * *" [type=value_error, input_value='0 25 * * *', input_type=str]
    For further information visit https://errors.pydantic.dev/2.14/v/value_error
An exception occurred.
"""

NO_GIT_OUTPUT = """\
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/deployments/steps/core.py", line 190, in run_step
FileNotFoundError: [Errno 2] No such file or directory: 'git'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/prefect/deployments/steps/core.py", line 262, in run_steps
prefect.deployments.steps.core.StepExecutionError: Encountered error while running prefect.deployments.steps.utility.run_shell_script
An exception occurred.
"""


@pytest.mark.parametrize(
    ("output", "shown", "message", "fix"),
    [
        (
            CRON_OUTPUT,
            "prefect.yaml",
            'ValidationError: 1 validation error for CronSchedule: cron: Invalid cron string: "0 25 * * *"',
            "See the prefect deploy output above",
        ),
        (
            NO_GIT_OUTPUT,
            "flows/prefect.yaml",
            "No such file or directory: 'git'",
            "The pipe's image has no git",
        ),
    ],
    ids=["pydantic cause", "no git"],
)
def test_failure_line_names_the_cause(output: str, shown: str, message: str, fix: str) -> None:
    cli = CliOutput(debug=False)
    for line in output.splitlines():
        cli.feed(line)
    line = failure(cli, shown, 1).line()
    assert message in line and fix in line, line
    assert "errors.pydantic.dev" not in line and "[type=" not in line


def test_a_prefect_yaml_in_a_folder_gets_paths_from_the_repository_root() -> None:
    cli = CliOutput(debug=False)
    for line in ("RuntimeError: `run_shell_script` failed with error code 2: cat: Dockerfile: No such file", ""):
        cli.feed(line)
    line = failure(cli, "flows/prefect.yaml", 1).line()
    assert "Fix the failing build or push step of flows/prefect.yaml" in line, line
    assert "paths of build and push steps are relative to the repository root, not flows/" in line, line


@pytest.mark.prefect
def test_prefect_schema_error_is_prefects_message(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    """What only Prefect checks (its prefect.yaml schema) comes back as its own words, in one line."""
    yaml_text = (
        f"deployments:\n  - name: {repo.a}\n    entrypoint: flows/pinned.py:run_pinned\n"
        "    work_pool: {name: pipe-tests}\n    schedules:\n      - cron: '0 * * * *'\n        interval: 60\n"
    )
    sha = repo.standard(prefect_yaml=yaml_text)
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha))
    line = caught.value.line()
    assert f"Prefect rejected prefect.yaml: invalid fields in {repo.a}: schedules" in line, line
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None


@pytest.mark.prefect
def test_failing_build_step_is_one_line_with_prefects_message(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    yaml_text = PREFECT_YAML.format(a=repo.a, b=repo.b).replace(
        "deployments:",
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      script: ls /no/such/dir-for-the-build\ndeployments:",
    )
    sha = repo.standard(prefect_yaml=yaml_text)
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT=f"pinned-code/{repo.a}"))
    line = caught.value.line()
    assert "prefect deploy failed (exit 1)" in line, line
    assert "`run_shell_script` failed with error code" in line and "/no/such/dir-for-the-build" in line, line
    assert "Fix the failing build or push step of prefect.yaml" in line
    out = capfd.readouterr().out
    assert "Traceback" not in out  # reduced to its exception line without DEBUG
    assert "prefect deploy │ RuntimeError: `run_shell_script` failed" in out
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None


@pytest.mark.prefect
def test_a_build_step_that_calls_git_in_a_folders_prefect_yaml(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, tmp_path: Path
) -> None:
    """The pipe's image has no git (PATH without it here), and a prefect.yaml in a folder still runs
    its steps from the repository root: the ✖ line says both."""
    yaml_text = PREFECT_YAML.format(a=repo.a, b=repo.b).replace(
        "deployments:",
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      script: git rev-parse HEAD\ndeployments:",
    )
    repo.standard(prefect_yaml=yaml_text)
    repo.git("mv", "prefect.yaml", "flows/prefect.yaml")
    sha = repo.commit("prefect.yaml in a folder")
    no_git = tmp_path / "empty-bin"
    no_git.mkdir()
    env = deploy_env(pipe_env, repo, sha, PATH=str(no_git), PREFECT_FILE="flows/prefect.yaml")
    with pytest.raises(DeployError) as caught:
        deploy_with(env)
    line = caught.value.line()
    assert "No such file or directory: 'git'" in line, line
    assert "The pipe's image has no git" in line, line
    assert "relative to the repository root, not flows/" in line, line
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None


def test_a_long_message_keeps_its_cause_and_its_advice() -> None:
    """Cut in the middle at spaces: the beginning (what failed) and the end (the server's own advice) stay."""
    message = "ValueError: the cause is here " + "filler " * 100 + "and the advice is at the end"
    cli = CliOutput(debug=False)
    cli.feed(message)
    line = failure(cli, "prefect.yaml", 1).line()
    assert "ValueError: the cause is here" in line and "and the advice is at the end" in line, line
    detail = line.split(": ", 1)[1]
    assert len(detail) < 460 and " … " in detail and "fille " not in detail, line
