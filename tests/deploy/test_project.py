"""Failing early: a prefect.yaml (or a selection of it) that cannot be deployed is one line, before
the CLI starts, and deploys nothing."""

from __future__ import annotations

import time

import pytest

from pipe.errors import DeployError
from tests.deploy.repo import FLOW, PREFECT_YAML, Repo, deploy_env, deploy_with, read_deployment
from tests.support.prefect_server import PrefectServer

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


@pytest.mark.prefect
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
