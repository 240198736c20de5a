"""What Prefect would refuse or get wrong one deployment at a time — schedules, triggers, concurrency
limits, placeholders naming blocks, variables and environment variables — found before anything is
deployed; and what Prefect still refuses named in the ✖ line."""

from __future__ import annotations

import time
import uuid

import pytest

from pipe.errors import DeployError
from tests.deploy.repo import FLOW, Repo, deploy_env, deploy_with, read_deployment
from tests.support.prefect_server import PrefectServer

pytestmark = pytest.mark.prefect

PULL = """\
pull:
  - prefect.deployments.steps.git_clone:
      repository: "{{ $BITBUCKET_CLONE_DIR }}"
      commit_sha: "{{ $BITBUCKET_COMMIT }}"
"""


def three_deployments(repo: Repo, second: str, top: str = PULL) -> str:
    """Three deployments of the standard flow; ``second`` is added to the second one's keys."""
    entries = "".join(
        f"  - name: {name}\n    entrypoint: flows/pinned.py:run_pinned\n    work_pool: {{name: pipe-tests}}\n"
        + (second if index == 1 else "")
        for index, name in enumerate((repo.a, repo.b, f"third-{repo.a}"))
    )
    return f"{top}deployments:\n{entries}"


def none_deployed(server: PrefectServer, repo: Repo) -> bool:
    names = (repo.a, repo.b, f"third-{repo.a}")
    return all(read_deployment(server, f"pinned-code/{name}") is None for name in names)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("schedules:\n      - cron: '0 25 * * *'\n", 'schedule #1: cron: Invalid cron string: "0 25 * * *"'),
        (
            "schedules:\n      - cron: '0 1 * * *'\n        timezone: Mars/Olympus\n",
            'schedule #1: timezone: Invalid timezone: "Mars/Olympus"',
        ),
        ("schedules:\n      - interval: 3600\n      - rrule: FREQ=NOPE\n", "schedule #2: rrule: Invalid RRule string"),
        ("schedules:\n      - interval: -5\n", "schedule #1: interval: Input should be greater than 0 seconds"),
        ("triggers:\n      - type: event\n        posture: Sideways\n", "trigger #1:"),
        ("concurrency_limit: {limit: 2, collision_strategy: QUEUE_FOREVER}\n", "concurrency_limit: collision_strategy"),
    ],
    ids=["cron", "timezone", "rrule", "interval", "trigger", "concurrency"],
)
def test_a_field_prefect_refuses_in_the_second_of_three_deploys_none(
    field: str, expected: str, pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    sha = repo.standard(prefect_yaml=three_deployments(repo, "    " + field))
    started = time.monotonic()
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha))
    line = caught.value.line()
    assert f"prefect.yaml: Prefect would refuse pinned-code/{repo.b}: {expected}" in line, line
    assert "nothing was deployed" in line and "\n" not in line
    assert time.monotonic() - started < 10  # decided before the CLI starts
    assert none_deployed(prefect_server, repo)


def test_what_prefect_still_refuses_is_named_in_the_line(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    """A cron that only a build step's output gives cannot be checked before: Prefect's own cause
    (printed after its traceback) makes the ✖ line, not pydantic's link line."""
    top = (
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: when\n      script: echo 0 25 '*' '*' '*'\n"
        + PULL
    )
    sha = repo.standard(
        prefect_yaml=three_deployments(repo, "    schedules:\n      - cron: '{{ when.stdout }}'\n", top)
    )
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT=f"pinned-code/{repo.b}"))
    line = caught.value.line()
    assert "prefect deploy failed (exit 1)" in line, line
    assert 'Invalid cron string: "0 25 * * *"' in line, line
    assert "errors.pydantic.dev" not in line
    assert none_deployed(prefect_server, repo)


def test_missing_blocks_variables_and_environment_variables_deploy_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    missing_block = f"no-such-creds-{uuid.uuid4().hex[:6]}"
    missing_variable = f"no_such_{uuid.uuid4().hex[:6]}"
    top = PULL.replace(
        '      commit_sha: "{{ $BITBUCKET_COMMIT }}"\n',
        f'      commit_sha: "{{{{ $BITBUCKET_COMMIT }}}}"\n      credentials: "{{{{ prefect.blocks.github-credentials.{missing_block} }}}}"\n',
    )
    second = f'    description: "{{{{ prefect.variables.{missing_variable} }}}}"\n'
    sha = repo.standard(prefect_yaml=three_deployments(repo, second, top))
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha))
    line = caught.value.line()
    assert (
        f"references block github-credentials/{missing_block}, variable {missing_variable}, which do not exist" in line
    )
    assert "nothing was deployed" in line
    assert none_deployed(prefect_server, repo)

    sha = repo.standard(prefect_yaml=three_deployments(repo, '    description: "for {{ $NOT_SET_ANYWHERE }}"\n'))
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha))
    line = caught.value.line()
    assert "prefect.yaml uses {{ $NOT_SET_ANYWHERE }}, which this build does not set" in line, line
    assert "Add NOT_SET_ANYWHERE to the pipe's variables: block" in line
    assert none_deployed(prefect_server, repo)


def test_existing_blocks_and_variables_deploy(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import VariableCreate
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    block, variable = f"repo-token-{uuid.uuid4().hex[:6]}", f"stage_{uuid.uuid4().hex[:6]}"
    settings = {PREFECT_API_URL: prefect_server.api_url, PREFECT_API_AUTH_STRING: prefect_server.auth_string}
    with temporary_settings(updates=settings):
        Secret(value="not-a-real-token").save(block)  # type: ignore[arg-type]  # pydantic coerces it
    with SyncPrefectClient(prefect_server.api_url, auth_string=prefect_server.auth_string) as client:
        client.create_variable(VariableCreate(name=variable, value="staging"))
    top = PULL.replace(
        '      commit_sha: "{{ $BITBUCKET_COMMIT }}"\n',
        f'      commit_sha: "{{{{ $BITBUCKET_COMMIT }}}}"\n      access_token: "{{{{ prefect.blocks.secret.{block} }}}}"\n',
    )
    second = f'    description: "for {{{{ prefect.variables.{variable} }}}}"\n'
    sha = repo.standard(prefect_yaml=three_deployments(repo, second, top))
    names = deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT=f"pinned-code/{repo.b}"))
    assert names == [f"pinned-code/{repo.b}"]
    deployment = read_deployment(prefect_server, names[0])
    assert deployment is not None
    assert deployment.description == "for staging"
    clone = deployment.pull_steps[0]["prefect.deployments.steps.git_clone"]
    assert clone["access_token"] == f"{{{{ prefect.blocks.secret.{block} }}}}"  # the worker resolves it


def test_warnings_for_code_that_exists_only_during_the_build_and_for_branches(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, caplog: pytest.LogCaptureFixture
) -> None:
    """DRY_RUN: build steps and no pull step (Prefect would point the deployment at the clone), a pull
    step that names a build step's temporary clone, a git_clone that follows a branch; the info line
    never shows a template."""
    repo.write("flows/pinned.py", FLOW.format(marker="v1"))
    build = (
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      id: info\n      script: echo 7\n"
        "  - prefect.deployments.steps.git_clone:\n      id: fresh\n      repository: '{{ $BITBUCKET_CLONE_DIR }}'\n"
    )
    repo.write(
        "prefect.yaml",
        f"{build}deployments:\n"
        f"  - name: {repo.a}\n    entrypoint: flows/pinned.py:run_pinned\n    work_pool: {{name: pipe-tests}}\n"
        "    version: 'rel-{{ info.stdout }}'\n"
        f"  - name: {repo.b}\n    entrypoint: flows/pinned.py:run_pinned\n    work_pool: {{name: pipe-tests}}\n"
        "    pull:\n      - prefect.deployments.steps.set_working_directory:\n"
        "          directory: '{{ fresh.directory }}'\n"
        f"  - name: third-{repo.a}\n    entrypoint: flows/pinned.py:run_pinned\n    work_pool: {{name: pipe-tests}}\n"
        "    pull:\n      - prefect.deployments.steps.git_clone:\n"
        "          repository: https://bitbucket.org/acme/data-pipelines.git\n          branch: main\n",
    )
    sha = repo.commit("shapes")
    deploy_with(deploy_env(pipe_env, repo, sha, DRY_RUN="true"))
    out = caplog.text  # warnings and the info line are log records
    assert f"Deployment pinned-code/{repo.a} has no pull step: Prefect points it at {repo.path}" in out, out
    assert f"Deployment pinned-code/{repo.b}'s pull steps point at {{{{ fresh.directory }}}}, which exists only" in out
    assert (
        f"Deployment pinned-code/third-{repo.a}'s git_clone pull step follows branch 'main', not commit {sha[:7]}"
    ) in out
    (info,) = [line for line in out.splitlines() if "would deploy" in line]
    assert "set by a build step)" in info and "{{" not in info, info
    assert none_deployed(prefect_server, repo)


def test_placeholders_of_deployments_not_selected_are_not_required(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    """A file's anchors (``definitions``) and its other deployments may name variables this step does
    not have: only what the selection deploys must resolve."""
    text = (
        "definitions:\n  pools:\n    tests: &tests {name: pipe-tests}\n"
        "  prod: &prod\n    description: 'for {{ $ONLY_FOR_PROD }}'\n    work_pool: *tests\n"
        f"deployments:\n  - name: {repo.a}\n    entrypoint: flows/pinned.py:run_pinned\n    work_pool: *tests\n"
        f"  - name: {repo.b}\n    entrypoint: flows/pinned.py:run_pinned\n    <<: *prod\n"
    )
    sha = repo.standard(prefect_yaml=text)
    names = deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT=f"pinned-code/{repo.a}", DRY_RUN="true"))
    assert names == [f"pinned-code/{repo.a}"]
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT=f"pinned-code/{repo.b}", DRY_RUN="true"))
    assert "uses {{ $ONLY_FOR_PROD }}, which this build does not set" in caught.value.line()
    assert none_deployed(prefect_server, repo)
