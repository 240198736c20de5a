"""The pipe's image, built from the Dockerfile and run the way Bitbucket Pipelines runs a pipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.container.conftest import Image, docker, run_container, say
from tests.support.leaks import assert_no_secrets
from tests.support.prefect_server import PrefectServer

pytestmark = pytest.mark.container

ADDED_SIZE_BUDGET_MB = 300
ENTRYPOINT = ["/opt/venv/bin/python", "-m", "pipe"]


def fail_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.lstrip().startswith("✖")]


# --- the image itself -------------------------------------------------------------------------------


def history_sizes(ref: str) -> list[int]:
    out = docker("history", "--human=false", "--no-trunc", "--format", "{{.Size}}", ref).stdout
    return [int(line) for line in out.split()]


def test_added_size_within_budget(pipe_image: Image, request: pytest.FixtureRequest) -> None:
    # `docker image inspect` sizes, cross-checked with the history entries the Dockerfile added on top.
    ours, base = history_sizes(pipe_image.tag), history_sizes(pipe_image.base)
    added_by_history = sum(ours[: len(ours) - len(base)])
    say(
        request.config,
        f"added over {pipe_image.base}: {pipe_image.added_mb:.1f} MB (budget {ADDED_SIZE_BUDGET_MB} MB); "
        f"image {pipe_image.size / 1e6:.1f} MB; built in {pipe_image.build_seconds:.0f}s",
    )
    assert ours[len(ours) - len(base) :] == base, "the image does not sit on its base's layers"
    assert added_by_history == pytest.approx(pipe_image.size - pipe_image.base_size, rel=0.02)
    assert pipe_image.added_mb <= ADDED_SIZE_BUDGET_MB


def test_config_entrypoint_and_user(pipe_image: Image) -> None:
    config = pipe_image.inspect()["Config"]
    assert config["Entrypoint"] == ENTRYPOINT
    assert config.get("User", "") in ("", "root", "0"), "a pipe runs as the default user (root)"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONPATH"] == "/opt/pipe"
    assert env["PYTHONSAFEPATH"] == "1"


# Runs inside the image; prints one JSON report, so the test asserts on facts, not on a shell's exit code.
PROBE = r"""
import importlib.util, json, os, shutil, subprocess, sys, sysconfig
site = sysconfig.get_path("purelib")
def present(name):
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:
        return False
report = {
    "python": sys.executable,
    "opt_pipe": sorted(os.listdir("/opt/pipe")),
    "modules": {m: present(m) for m in ("pipe", "prefect", "bitbucket_pipes_toolkit", "boto3", "hvac", "google.auth",
                                        "docker", "git", "setuptools")},
    "build_tools": [t for t in ("gcc", "cc", "make", "git") if shutil.which(t)],
    "pip_caches": [p for p in ("/root/.cache/pip", "/root/.cache") if os.path.exists(p)],
    "tests_or_git": [p for p in ("/opt/pipe/tests", "/opt/pipe/.git", "/tests", "/.git") if os.path.exists(p)],
    "prefect_ui": [d for d in ("ui", "ui-v2") if os.path.isdir(os.path.join(site, "prefect", "server", d))],
    "botocore": sorted(d for d in os.listdir(os.path.join(site, "botocore", "data"))
                       if os.path.isdir(os.path.join(site, "botocore", "data", d))),
    "botocore_files": sorted(f for f in os.listdir(os.path.join(site, "botocore", "data")) if f.endswith(".json")),
    "pyc_prefect": os.path.isdir(os.path.join(site, "prefect", "__pycache__")),
    "pyc_pipe": os.path.isdir("/opt/pipe/pipe/__pycache__"),
}
deploy = subprocess.run([sys.executable, "-c", "import prefect.cli.deploy, bitbucket_pipes_toolkit"], capture_output=True)
helptext = subprocess.run(["prefect", "--help"], capture_output=True, text=True)
report["import_deploy"] = deploy.returncode
report["prefect_help"] = helptext.returncode
report["prefect_help_has_deploy"] = "deploy" in helptext.stdout
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def probe(pipe_image: Image) -> dict[str, object]:
    out = docker("run", "--rm", "--entrypoint", "/opt/venv/bin/python", pipe_image.tag, "-c", PROBE, timeout=180)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_contents_are_runtime_only(probe: dict[str, object]) -> None:
    assert probe["opt_pipe"] == ["LICENSE", "README.md", "pipe", "pipe.yml"]
    assert probe["build_tools"] == [], "no compilers or git in the final image"
    assert probe["pip_caches"] == []
    assert probe["tests_or_git"] == []
    assert probe["prefect_ui"] == [], "the Prefect UI bundle is dead weight in a client"


def test_runtime_modules(probe: dict[str, object]) -> None:
    modules = probe["modules"]
    assert isinstance(modules, dict)
    # docker: Prefect requires it, and prefect_docker's build and push steps import it (test_docker_steps.py).
    for needed in ("pipe", "prefect", "bitbucket_pipes_toolkit", "boto3", "hvac", "google.auth", "docker"):
        assert modules[needed], f"{needed} is missing from the image"
    for dropped in ("git", "setuptools"):
        assert not modules[dropped], f"{dropped} should have been removed from the image"
    assert probe["import_deploy"] == 0, "`import prefect.cli.deploy` fails in the image"
    assert probe["prefect_help"] == 0 and probe["prefect_help_has_deploy"], "`prefect --help` is broken"


def test_botocore_keeps_what_the_pipe_calls(probe: dict[str, object]) -> None:
    services = probe["botocore"]
    assert isinstance(services, list)
    assert {"sts", "secretsmanager", "ssm"} <= set(services)
    assert len(services) < 20, "botocore's service models were not trimmed"
    assert {"endpoints.json", "partitions.json"} <= set(probe["botocore_files"])  # type: ignore[arg-type]


def test_precompiled(probe: dict[str, object]) -> None:
    assert probe["pyc_prefect"] and probe["pyc_pipe"], "bytecode was not precompiled into the image"


def test_working_directory_cannot_shadow_the_pipe(pipe_image: Image, tmp_path: Path) -> None:
    """A user's repository with its own ``pipe`` package (a data team's 'pipe/' folder) must not win."""
    decoy = tmp_path / "pipe"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text("print('DECOY PIPE RAN')\nraise SystemExit(3)\n")
    (tmp_path / "pipe.py").write_text("print('DECOY MODULE RAN')\nraise SystemExit(4)\n")
    result = run_container(pipe_image, {"TIMEOUT": "abc", "DEPLOYMENT": "greet/ci"}, tmp_path, timeout=120)
    assert "DECOY" not in result.output, result
    assert result.code == 1, result
    assert fail_lines(result.output), result


# --- runs against the real Prefect server -----------------------------------------------------------


@pytest.fixture()
def clone_dir(pipe_env: dict[str, str]) -> Path:
    """The step's clone directory: mounted at the same path and used as the working directory."""
    return Path(pipe_env["BITBUCKET_CLONE_DIR"])


def test_completed_run(
    pipe_image: Image, pipe_env: dict[str, str], clone_dir: Path, prefect_server: PrefectServer
) -> None:
    result = run_container(pipe_image, {**pipe_env, "DEPLOYMENT": "greet/ci"}, clone_dir)
    assert result.code == 0, result
    assert "last line of greet" in result.output, result
    assert any(line.lstrip().startswith("✔") for line in result.output.splitlines()), result
    assert not fail_lines(result.output), result
    assert "Traceback" not in result.output, result
    assert_no_secrets(result.output, prefect_server.auth_string)


def test_failed_run(
    pipe_image: Image, pipe_env: dict[str, str], clone_dir: Path, prefect_server: PrefectServer
) -> None:
    result = run_container(pipe_image, {**pipe_env, "DEPLOYMENT": "fail/ci"}, clone_dir)
    assert result.code == 1, result
    assert "about to fail" in result.output, result  # the flow's own log line, streamed
    assert fail_lines(result.output), result
    assert not any(line.lstrip().startswith("✔") for line in result.output.splitlines()), result
    assert_no_secrets(result.output, prefect_server.auth_string)


def test_validation_error_is_one_clear_line(
    pipe_image: Image, pipe_env: dict[str, str], clone_dir: Path, prefect_server: PrefectServer
) -> None:
    result = run_container(pipe_image, {**pipe_env, "DEPLOYMENT": "greet/ci", "TIMEOUT": "abc"}, clone_dir, timeout=120)
    assert result.code == 1, result
    failures = fail_lines(result.output)
    assert len(failures) == 1, result
    assert "TIMEOUT" in failures[0], result
    assert "Traceback" not in result.output, result
    assert_no_secrets(result.output, prefect_server.auth_string)
