"""ACTION=deploy / deploy-and-run: Prefect's own `prefect deploy` on a real git repository's prefect.yaml,
against the real Prefect server and process worker of the test session.

Each test makes its own repository in tmp_path (a flow, a prefect.yaml whose git_clone pull step pins
the worker to `{{ $BITBUCKET_COMMIT }}`, cloning the repository by its path) and deploys it under
names of its own, so tests never see each other's deployments.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipe.auth import authenticate
from pipe.config import SCHEMA, DeploymentRef, load
from pipe.deploy import CliOutput, DeploymentSpec, deploy, failure, matches, run_cli
from pipe.errors import DeployError
from tests.conftest import ROOT, PipeResult, assert_no_secrets, run_pipe
from tests.prefect_server import PrefectServer

pytestmark = pytest.mark.prefect

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


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def deploy_env(pipe_env: dict[str, str], repo: Repo, sha: str, **extra: str) -> dict[str, str]:
    env = {**pipe_env, "ACTION": "deploy", "BITBUCKET_CLONE_DIR": str(repo.path), "BITBUCKET_COMMIT": sha, **extra}
    if "DEPLOYMENT" not in extra:
        env.pop("DEPLOYMENT", None)
    return env


def deploy_with(env: dict[str, str], deployment: str | None = None) -> list[str]:
    """deploy() exactly as run.py calls it: a Config from the variables and the step's credential."""
    config = load(env)
    if deployment is not None:  # shapes config.parse_deployment does not accept yet (bare names)
        config = dataclasses.replace(config, deployment=DeploymentRef(deployment))
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


def fail_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "✖" in line]
    assert len(lines) == 1, output
    return lines[0]


def pipe_wired() -> bool:
    """ACTION=deploy reaches pipe.deploy once run.py calls it."""
    return "pipe.deploy" in (ROOT / "pipe" / "run.py").read_text()


needs_wiring = pytest.mark.skipif(not pipe_wired(), reason="ACTION=deploy is not wired into pipe/run.py yet")


# --------------------------------------------------------------------------------------------------
# Deploying


def test_glob_deploys_only_the_matching_ones_at_the_commit(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    sha = repo.standard()
    before = (repo.path / "prefect.yaml").read_bytes()
    started = time.monotonic()
    # 'pinned-code' is the flow's registered name; Prefect's own --name matching knows only 'run_pinned'.
    names = deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT="pinned-code/*"))
    elapsed = time.monotonic() - started

    assert names == [f"pinned-code/{repo.a}", f"pinned-code/{repo.b}"]
    for name in names:
        deployment = read_deployment(prefect_server, name)
        assert deployment is not None, name
        assert deployment.version == sha[:8]  # what Prefect derives from BITBUCKET_COMMIT itself
        assert {"deploy-commit:" + sha[:7], "deploy-build:42"} <= set(deployment.tags)
        assert deployment.work_pool_name == "pipe-tests"
        clone = deployment.pull_steps[0]["prefect.deployments.steps.git_clone"]
        assert clone == {"repository": str(repo.path), "commit_sha": sha}  # resolved at deploy time
    first = read_deployment(prefect_server, names[0])
    assert "mine" in first.tags  # the file's own tags are kept
    assert read_deployment(prefect_server, f"other-flow/{repo.a}") is None  # not selected: not deployed

    assert (repo.path / "prefect.yaml").read_bytes() == before  # the user's file is never rewritten
    assert repo.git("status", "--porcelain") == ""  # nothing left in the clone
    out = capfd.readouterr().out
    assert f"prefect deploy │ Deployment 'pinned-code/{repo.a}' successfully created" in out
    assert "╭" not in out and "\x1b[" not in out.replace("\x1b[0m", "").split("prefect deploy │")[-1]
    assert_no_secrets(out, prefect_server.auth_string)
    assert elapsed < 60


def test_bare_name_selects_and_version_names_the_commit_without_git(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, tmp_path: Path
) -> None:
    """The pipe's image has no git, so Prefect cannot derive its vcs:bitbucket version (it reads the
    commit message with `git log`) and would fall back to a hash of the flow file: the pipe sets the
    version Prefect would have derived."""
    sha = repo.standard()
    no_git = tmp_path / "empty-bin"
    no_git.mkdir()
    env = deploy_env(pipe_env, repo, sha, PATH=str(no_git))
    # A bare deployment name matches it under every flow.
    names = deploy_with(env, deployment=repo.a)
    assert names == [f"pinned-code/{repo.a}", f"other-flow/{repo.a}"]
    for name in names:
        assert read_deployment(prefect_server, name).version == sha[:8]


def test_dry_run_checks_everything_and_deploys_nothing(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    sha = repo.standard()
    names = deploy_with(deploy_env(pipe_env, repo, sha, DEPLOYMENT="pinned-code/*", DRY_RUN="true"))
    assert names == [f"pinned-code/{repo.a}", f"pinned-code/{repo.b}"]
    out = capfd.readouterr().out
    assert f"deploy-commit:{sha[:7]}" in out and f"version: {sha[:8]}" in out  # the file the CLI would read
    assert "prefect deploy │" not in out  # the CLI never ran
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None


@pytest.mark.skipif("DEPLOYMENTS" not in SCHEMA, reason="config has no DEPLOYMENTS variable")
def test_deployments_list_selects_each_entry(pipe_env: dict[str, str], repo: Repo) -> None:
    """DEPLOYMENTS (several runs) selects for the deploy actions too, in its order, never everything."""
    sha = repo.standard()
    entries = {
        "DEPLOYMENTS_COUNT": "2",
        "DEPLOYMENTS_0": f"pinned-code/{repo.b}",
        "DEPLOYMENTS_1": f"other-flow/{repo.a}",
    }
    names = deploy_with(deploy_env(pipe_env, repo, sha, DRY_RUN="true", **entries))
    assert names == [f"pinned-code/{repo.b}", f"other-flow/{repo.a}"]
    with pytest.raises(DeployError, match=r"DEPLOYMENTS item 1 'other-flow/nope' matches none"):
        deploy_with(deploy_env(pipe_env, repo, sha, DRY_RUN="true", **{**entries, "DEPLOYMENTS_1": "other-flow/nope"}))


def test_run_executes_the_deployed_commits_code(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    """Deploy commit 1, move the branch on to commit 2: a run still executes commit 1's code. Deploy
    commit 2: now it executes commit 2's."""
    name = f"pinned-code/{repo.a}"
    first = repo.standard("first-commit-code")
    assert deploy_with(deploy_env(pipe_env, repo, first, DEPLOYMENT=name)) == [name]
    second = repo.standard("second-commit-code")  # HEAD moves on; the deployment stays on `first`

    run_env = {**pipe_env, "DEPLOYMENT": name, "BITBUCKET_COMMIT": first}
    result = run_pipe(run_env)
    assert result.code == 0, result
    assert "code marker: first-commit-code" in result.output
    assert "second-commit-code" not in result.output

    assert deploy_with(deploy_env(pipe_env, repo, second, DEPLOYMENT=name)) == [name]
    assert read_deployment(prefect_server, name).version == second[:8]
    result = run_pipe({**run_env, "BITBUCKET_COMMIT": second, "BITBUCKET_STEP_RUN_NUMBER": "2"})
    assert result.code == 0, result
    assert "code marker: second-commit-code" in result.output
    assert "first-commit-code" not in result.output


def test_cli_environment_is_minimal_and_its_output_masked(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    """A build step prints the environment `prefect deploy` runs in."""
    yaml_text = PREFECT_YAML.format(a=repo.a, b=repo.b).replace(
        "deployments:",
        "build:\n  - prefect.deployments.steps.run_shell_script:\n      script: env\n"
        "  - prefect.deployments.steps.run_shell_script:\n      script: echo stage={{ $STAGE }}\n"
        "deployments:",
    )
    sha = repo.standard(prefect_yaml=yaml_text)
    env = deploy_env(
        pipe_env,
        repo,
        sha,
        DEPLOYMENT=f"pinned-code/{repo.b}",
        STAGE="staging-7",  # named by the prefect.yaml: passed on
        UNRELATED_SETTING="not-for-prefect",  # not named: stays behind
        BITBUCKET_STEP_OIDC_TOKEN="eyJ.fake-oidc-token.sig",  # secret by name: stays behind
        BITBUCKET_ACCESS_TOKEN="fake-access-token-1234",
    )
    assert deploy_with(env) == [f"pinned-code/{repo.b}"]
    out = capfd.readouterr().out
    assert f"BITBUCKET_COMMIT={sha}" in out  # Prefect derives version info from these
    assert "BITBUCKET_BRANCH=main" in out
    assert "PREFECT_API_AUTH_STRING=***" in out  # passed, and masked in the build log
    assert "stage=staging-7" in out
    assert "NO_COLOR=1" in out and "PREFECT_CLI_PROMPT=false" in out
    assert "UNRELATED_SETTING" not in out
    assert "BITBUCKET_STEP_OIDC_TOKEN" not in out and "fake-oidc-token" not in out
    assert "BITBUCKET_ACCESS_TOKEN" not in out and "fake-access-token" not in out
    assert_no_secrets(out, prefect_server.auth_string)


# --------------------------------------------------------------------------------------------------
# Failing early: bad input is one line and deploys nothing


BROKEN: dict[str, tuple[str | None, dict[str, str], str, tuple[str, ...]]] = {
    # id: (prefect.yaml text or None for no file, files, extra variables, expected parts of the line)
    "missing file": (None, {}, "", ("prefect.yaml was not found in the repository",)),
    "not yaml": ("deployments: [\n  - name: x\n", {}, "", ("prefect.yaml is not valid YAML", "line")),
    "not a mapping": ("- just\n- a list\n", {}, "", ("prefect.yaml is not a YAML mapping",)),
    "no deployments": ("name: empty\n", {}, "", ("prefect.yaml has no deployments",)),
    "syntax error": (
        "deployments:\n  - name: {a}\n    entrypoint: flows/broken.py:flow_fn\n    work_pool: {{name: pipe-tests}}\n",
        {"flows/broken.py": "from prefect import flow\n\n@flow\ndef flow_fn(:\n    pass\n"},
        "",
        ("flows/broken.py line 4: SyntaxError", "Fix the flow file"),
    ),
    "missing function": (
        "deployments:\n  - name: {a}\n    entrypoint: flows/pinned.py:nope\n    work_pool: {{name: pipe-tests}}\n",
        {},
        "",
        ("flows/pinned.py defines no 'nope'",),
    ),
    "no work pool": (
        "deployments:\n  - name: {a}\n    entrypoint: flows/pinned.py:run_pinned\n",
        {},
        "",
        ("has no work pool",),
    ),
    "selection matches nothing": (
        PREFECT_YAML,
        {},
        "etl/*",
        ("DEPLOYMENT 'etl/*' matches none of the deployments in prefect.yaml", "pinned-code/{a}", "other-flow/{a}"),
    ),
    "pull step placeholder this build does not set": (
        PREFECT_YAML.replace("$BITBUCKET_COMMIT", "$BITBUCKET_TAG"),
        {},
        "",
        ("uses {{{{ $BITBUCKET_TAG }}}}, which this build does not set",),
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_input_fails_early_and_deploys_nothing(
    case: str, pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo, capfd: pytest.CaptureFixture[str]
) -> None:
    text, files, selection, expected = BROKEN[case]
    repo.write("flows/pinned.py", FLOW.format(marker="v1"))
    for relative, content in files.items():
        repo.write(relative, content)
    if text is not None:
        repo.write("prefect.yaml", text.format(a=repo.a, b=repo.b))
    sha = repo.commit("broken")
    extra = {"DEPLOYMENT": selection} if selection else {}
    started = time.monotonic()
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha, **extra))
    line = caught.value.line()
    for part in expected:
        assert part.format(a=repo.a) in line, line
    assert "\n" not in line
    assert time.monotonic() - started < 10  # decided before the CLI starts
    assert "prefect deploy │" not in capfd.readouterr().out
    for name in (f"pinned-code/{repo.a}", f"pinned-code/{repo.b}", f"flow-fn/{repo.a}"):
        assert read_deployment(prefect_server, name) is None


def test_missing_work_pool_deploys_none_of_the_selection(
    pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo
) -> None:
    """Prefect deploys one deployment after the other and stops at a missing pool, leaving the ones
    before it deployed; the pipe asks the API first, so nothing is."""
    pool = f"no-such-pool-{uuid.uuid4().hex[:6]}"
    sha = repo.standard(
        prefect_yaml=PREFECT_YAML.format(a=repo.a, b=repo.b).replace(
            "name: pipe-tests\n  - name: " + repo.a, f"name: {pool}\n  - name: {repo.a}"
        )
    )
    with pytest.raises(DeployError) as caught:
        deploy_with(deploy_env(pipe_env, repo, sha))
    line = caught.value.line()
    assert f"work pool '{pool}'" in line and "does not exist" in line and "nothing was deployed" in line, line
    assert f"prefect work-pool create {pool}" in line
    for name in (f"pinned-code/{repo.a}", f"pinned-code/{repo.b}", f"other-flow/{repo.a}"):
        assert read_deployment(prefect_server, name) is None


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


# --------------------------------------------------------------------------------------------------
# The pieces, without a server


def spec(name: str, flow_names: tuple[str, ...]) -> DeploymentSpec:
    return DeploymentSpec(index=0, name=name, entrypoint="f.py:x", flow_names=flow_names, work_pool="p")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("etl/prod", True),
        ("etl_flow/prod", True),  # the function's name, as Prefect's CLI matches it
        ("etl-flow/prod", True),  # the function's name as Prefect derives a flow name from it
        ("prod", True),
        ("pro*", True),
        ("*/prod", True),
        ("e*/p*", True),
        ("etl/*", True),
        ("etl/staging", False),
        ("other/prod", False),
        ("prod*x", False),
        ("ETL/prod", False),
    ],
)
def test_selection(pattern: str, expected: bool) -> None:
    assert matches(spec("prod", ("etl", "etl-flow", "etl_flow")), pattern) is expected


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


# --------------------------------------------------------------------------------------------------
# End to end, as a Bitbucket step runs it (once run.py calls pipe.deploy)


def pipe_in_clone(env: dict[str, str], repo: Repo) -> PipeResult:
    """`python -m pipe` as the image runs it: in the clone, the pipe on PYTHONPATH, the clone never
    importable as the pipe (PYTHONSAFEPATH)."""
    return run_pipe({**env, "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1"}, cwd=repo.path)


def assert_clean_failure(result: PipeResult, *expected: str) -> None:
    assert result.code == 1, result
    line = fail_line(result.output)
    for text in expected:
        assert text in line, result
    assert "Traceback" not in result.output, result


@needs_wiring
def test_pipe_deploy_and_run(pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo) -> None:
    sha = repo.standard("deployed-and-run")
    name = f"pinned-code/{repo.a}"
    result = pipe_in_clone({**deploy_env(pipe_env, repo, sha, DEPLOYMENT=name), "ACTION": "deploy-and-run"}, repo)
    assert result.code == 0, result
    assert f"prefect deploy │ Deployment '{name}' successfully created" in result.output
    assert "code marker: deployed-and-run" in result.output
    assert "✔" in result.output
    assert read_deployment(prefect_server, name).version == sha[:8]
    assert_no_secrets(result.output, prefect_server.auth_string)


@needs_wiring
def test_pipe_deploy_broken_file_is_one_line(pipe_env: dict[str, str], repo: Repo) -> None:
    repo.write("prefect.yaml", "deployments: [\n")
    sha = repo.commit("broken")
    result = pipe_in_clone(deploy_env(pipe_env, repo, sha), repo)
    assert_clean_failure(result, "prefect.yaml is not valid YAML")


@needs_wiring
def test_pipe_deploy_bare_glob(pipe_env: dict[str, str], prefect_server: PrefectServer, repo: Repo) -> None:
    """config must accept a bare deployment-name glob for ACTION=deploy."""
    sha = repo.standard()
    result = pipe_in_clone(deploy_env(pipe_env, repo, sha, DEPLOYMENT=repo.b[:-2] + "*"), repo)
    assert result.code == 0, result
    assert "✔" in result.output
    assert read_deployment(prefect_server, f"pinned-code/{repo.b}") is not None
    assert read_deployment(prefect_server, f"pinned-code/{repo.a}") is None
    assert_no_secrets(result.output, prefect_server.auth_string)
