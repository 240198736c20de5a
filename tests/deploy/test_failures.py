"""A failed `prefect deploy` as one line: Prefect's own message and the fix."""

from __future__ import annotations

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
    ],
    ids=["missing flow", "forbidden", "work pool"],
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
