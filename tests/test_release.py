"""The pipe's own CI and release: bitbucket-pipelines.yml's shape, version agreement, .ci/release, hadolint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pipe import ROOT

VENV_BIN = Path(sys.executable).parent
IMAGE = "org/prefect-trigger"
SEMVER = r"\d+\.\d+\.\d+"
PIPE_LINE = re.compile(rf"^\s*- pipe: {re.escape(IMAGE)}:(\S+)\s*$", re.MULTILINE)


def tool(name: str) -> str:
    """A dev tool from the venv (requirements-dev.txt), or from PATH."""
    found = VENV_BIN / name if (VENV_BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is not installed (requirements-dev.txt)"
    return str(found)


# --- bitbucket-pipelines.yml --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipelines() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "bitbucket-pipelines.yml").read_text())


def parallel_steps(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A `- parallel:` item holds steps either as a list or under `steps:` (with fail-fast)."""
    block = entry["parallel"]
    items = block["steps"] if isinstance(block, dict) else block
    return [item["step"] for item in items]


def steps_of(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for entry in pipeline:
        assert isinstance(entry, dict) and len(entry) == 1, f"a pipeline item is one step or parallel: {entry}"
        if "parallel" in entry:
            steps += parallel_steps(entry)
        else:
            assert "step" in entry, f"unknown pipeline item {list(entry)}"
            steps.append(entry["step"])
    return steps


def script_text(step: dict[str, Any]) -> str:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in step["script"])


def uses_docker(step: dict[str, Any], pipelines: dict[str, Any]) -> bool:
    if "docker" not in step.get("services", []):
        return False
    # `docker` is built in; a definition, if any, must at least be a mapping.
    defined = pipelines.get("definitions", {}).get("services", {})
    return "docker" not in defined or isinstance(defined["docker"], dict)


def check_test_stage(pipeline: list[dict[str, Any]], pipelines: dict[str, Any]) -> None:
    first = pipeline[0]
    assert "parallel" in first, "the pipeline starts with a parallel test stage"
    steps = parallel_steps(first)
    assert len(steps) >= 2
    scripts = [script_text(step) for step in steps]
    assert any("ruff check" in s and "ruff format --check" in s for s in scripts), "no ruff lint step"
    assert any("hadolint Dockerfile" in s for s in scripts), "no hadolint step"
    tests = [step for step in steps if "pytest" in script_text(step)]
    assert tests, "no pytest step"
    assert all(uses_docker(step, pipelines) for step in tests), "the test step needs `services: [docker]`"


def test_every_step_is_well_formed(pipelines: dict[str, Any]) -> None:
    assert set(pipelines["pipelines"]) <= {"default", "branches", "tags", "custom", "pull-requests"}
    all_pipelines = [pipelines["pipelines"]["default"], *pipelines["pipelines"].get("branches", {}).values()]
    for pipeline in all_pipelines:
        for step in steps_of(pipeline):
            assert step.get("name"), "every step is named"
            assert isinstance(step["script"], list) and step["script"], f"{step['name']}: script is a list"
            assert all(isinstance(line, str) for line in step["script"]), f"{step['name']}: script lines"
            for cache in step.get("caches", []):
                builtin = {"docker", "pip", "node", "maven", "gradle", "composer", "dotnetcore", "sbt", "ivy2"}
                assert cache in builtin or cache in pipelines["definitions"].get("caches", {}), cache
            for service in step.get("services", []):
                assert service == "docker" or service in pipelines["definitions"]["services"], service


def test_default_pipeline_runs_the_test_stage(pipelines: dict[str, Any]) -> None:
    check_test_stage(pipelines["pipelines"]["default"], pipelines)


def test_main_branch_tests_then_releases(pipelines: dict[str, Any]) -> None:
    main = pipelines["pipelines"]["branches"]["main"]
    check_test_stage(main, pipelines)
    last = main[-1]
    assert "step" in last, "the release is a step after the parallel stage"
    release = last["step"]
    assert ".ci/release" in script_text(release)
    assert "semversioner" in script_text(release), "the release step installs semversioner"
    assert uses_docker(release, pipelines), "the release step builds and pushes the image"


def test_ci_scripts_are_executable() -> None:
    for name in ("release", "docker-setup"):
        path = ROOT / ".ci" / name
        assert path.is_file() and os.access(path, os.X_OK), f".ci/{name} must be an executable file"


# --- versions agree -----------------------------------------------------------------------------------


def versions_in(root: Path) -> dict[str, list[str]]:
    pipe_yml = yaml.safe_load((root / "pipe.yml").read_text())
    image = re.fullmatch(rf"{re.escape(IMAGE)}:({SEMVER})", pipe_yml["image"])
    changelog = re.search(rf"^## ({SEMVER})\s*$", (root / "CHANGELOG.md").read_text(), re.MULTILINE)
    found = {
        "pipe.yml image": [image.group(1)] if image else [],
        "pipe.yml yml snippet": PIPE_LINE.findall(pipe_yml.get("yml", "")),
        "README.md '- pipe:' lines": PIPE_LINE.findall((root / "README.md").read_text()),
        "README.md image references": re.findall(rf"{re.escape(IMAGE)}:({SEMVER})\b", (root / "README.md").read_text()),
        "CHANGELOG.md latest": [changelog.group(1)] if changelog else [],
    }
    init = root / "pipe" / "__init__.py"
    if init.exists():
        found["pipe.__version__"] = re.findall(rf'^__version__ = "({SEMVER})"', init.read_text(), re.MULTILINE)
    return found


def assert_versions_agree(root: Path) -> str:
    found = versions_in(root)
    for where, versions in found.items():
        assert versions, f"no version found in {where}"
    distinct = {v for versions in found.values() for v in versions}
    assert len(distinct) == 1, f"versions disagree: {found}"
    return distinct.pop()


def test_versions_agree() -> None:
    version = assert_versions_agree(ROOT)
    released = subprocess.run(
        [tool("semversioner"), "current-version"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert released == version, f"semversioner's last release is {released}, the files say {version}"


def test_version_check_catches_a_stale_readme(tmp_path: Path) -> None:
    copy = release_copy(tmp_path)
    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace(f"- pipe: {IMAGE}:", f"- pipe: {IMAGE}:9.9.9-was-", 1))
    with pytest.raises(AssertionError, match="disagree"):
        assert_versions_agree(copy)


# --- .ci/release --------------------------------------------------------------------------------------

RELEASE_FILES = (".changes", ".semversioner", "CHANGELOG.md", "README.md", "pipe.yml", "pyproject.toml")


def release_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    (copy / "pipe").mkdir(parents=True)
    for name in RELEASE_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, copy / name)
        elif src.exists():
            shutil.copy2(src, copy / name)
    shutil.copy2(ROOT / "pipe" / "__init__.py", copy / "pipe" / "__init__.py")
    return copy


def release_env(**extra: str) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("HOME", "LANG") if k in os.environ}
    return {**keep, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def semversioner(copy: Path, *args: str) -> str:
    return subprocess.run(
        [tool("semversioner"), *args], cwd=copy, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def test_release_prepare_bumps_every_version(tmp_path: Path) -> None:
    copy = release_copy(tmp_path)
    before = assert_versions_agree(copy)
    semversioner(copy, "add-change", "--type", "patch", "--description", "A test change")
    expected = semversioner(copy, "next-version")
    assert expected != before
    proc = subprocess.run(
        [str(ROOT / ".ci" / "release"), "prepare"],
        cwd=copy,
        env=release_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expected
    assert assert_versions_agree(copy) == expected
    assert "- patch: A test change" in (copy / "CHANGELOG.md").read_text()
    assert re.search(rf'^version = "{re.escape(expected)}"', (copy / "pyproject.toml").read_text(), re.MULTILINE)


def test_release_without_changes_does_nothing(tmp_path: Path) -> None:
    copy = release_copy(tmp_path)
    for pending in copy.glob("*/next-release"):
        shutil.rmtree(pending)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    proc = subprocess.run(
        [str(ROOT / ".ci" / "release")],
        cwd=copy,
        env=release_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "nothing to release" in proc.stderr
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


FAKE_DOCKER = """#!/usr/bin/env bash
# Records each call; `login` reads the password from stdin as the real client does.
if [ "$1" = login ]; then read -r password; echo "$* stdin=${#password}" >> "$DOCKER_CALLS"; exit 0; fi
echo "$*" >> "$DOCKER_CALLS"
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def test_release_publishes_commit_tag_and_image(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is needed to test the release")
    copy = release_copy(tmp_path)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", str(origin))
    git(copy, "init", "--quiet", "-b", "main")
    git(copy, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "add", "-A")
    git(copy, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet", "-m", "start")
    git(copy, "remote", "add", "origin", str(origin))
    semversioner(copy, "add-change", "--type", "minor", "--description", "Something new")
    expected = semversioner(copy, "next-version")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "docker-calls"
    password = "hub-pa55word-not-for-argv"
    env = release_env(DOCKERHUB_USERNAME="releaser", DOCKERHUB_PASSWORD=password, DOCKER_CALLS=str(calls))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    for name in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env[name] = "releaser" if "NAME" in name else "releaser@example.invalid"
    proc = subprocess.run(
        [str(ROOT / ".ci" / "release")], cwd=copy, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expected
    assert password not in proc.stdout + proc.stderr
    # git: the release commit and its tag reached origin.
    assert git(origin, "tag", "--list") == expected
    assert "[skip ci]" in git(origin, "log", "-1", "--format=%s", "main")
    assert git(origin, "rev-parse", f"{expected}^{{commit}}") == git(origin, "rev-parse", "main")
    assert f"- pipe: {IMAGE}:{expected}" in git(origin, "show", "main:README.md")
    assert git(copy, "status", "--porcelain") == "", "the release left uncommitted changes"
    # docker: built, logged in through stdin, pushed the version and the major tag.
    recorded = calls.read_text().splitlines()
    major = expected.split(".")[0]
    assert any(c.startswith("build ") and f"-t {IMAGE}:{expected}" in c for c in recorded), recorded
    assert f"login --username releaser --password-stdin stdin={len(password)}" in recorded
    assert f"push {IMAGE}:{expected}" in recorded and f"push {IMAGE}:{major}" in recorded
    assert all(password not in c for c in recorded)
    build = next(i for i, c in enumerate(recorded) if c.startswith("build "))
    push = next(i for i, c in enumerate(recorded) if c.startswith("push "))
    assert build < push, "the image is built before anything is pushed"


def test_release_refuses_to_publish_without_registry_credentials(tmp_path: Path) -> None:
    copy = release_copy(tmp_path)
    semversioner(copy, "add-change", "--type", "patch", "--description", "x")
    before = (copy / "pipe.yml").read_text()
    proc = subprocess.run(
        [str(ROOT / ".ci" / "release")],
        cwd=copy,
        env=release_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "DOCKERHUB_USERNAME" in proc.stderr
    assert (copy / "pipe.yml").read_text() == before, "nothing is prepared when it cannot be published"


# --- Dockerfile ---------------------------------------------------------------------------------------


def test_hadolint_dockerfile() -> None:
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), f"hadolint:\n{proc.stdout}{proc.stderr}"
