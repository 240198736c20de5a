"""The container tier: build the pipe's image and run it exactly as Bitbucket Pipelines runs a pipe.

The engine and the base image come from ``.ci/docker-setup`` (it starts an engine as root when none
answers, and makes a stand-in base where ``python:3.12-slim`` cannot be pulled). Under ``CI=true`` a
missing engine is a failure; elsewhere the tier is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support.pipe import ROOT, PipeResult, plain

DOCKER_SETUP = ROOT / ".ci" / "docker-setup"
SETUP_TIMEOUT = 900  # a fresh machine: install docker.io, start the engine, debootstrap a base
BUILD_TIMEOUT = 1800
RUN_TIMEOUT = 300


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """No engine can be had: a failure in CI, a skip elsewhere."""
    if in_ci():
        pytest.fail(f"container tier cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check, stdin=subprocess.DEVNULL
    )


def engine_up() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def say(config: pytest.Config, message: str) -> None:
    """A line in the test log even when output is captured (sizes and timings worth seeing in CI)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(f"[container] {message}")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"[container] {message}")


@dataclass(frozen=True)
class Image:
    tag: str
    base: str
    size: int
    base_size: int
    build_seconds: float

    @property
    def added_mb(self) -> float:
        return (self.size - self.base_size) / 1e6

    def inspect(self) -> dict[str, Any]:
        inspected: dict[str, Any] = json.loads(docker("image", "inspect", self.tag).stdout)[0]
        return inspected


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


@pytest.fixture(scope="session")
def base_image() -> str:
    """An engine that answers, and the BASE_IMAGE to build on (printed by .ci/docker-setup)."""
    if not engine_up() and os.geteuid() != 0:
        unavailable("no Docker engine answers `docker info` (or no docker CLI), and not root to start one")
    try:
        proc = subprocess.run(
            [str(DOCKER_SETUP)],
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        unavailable(f".ci/docker-setup did not finish within {SETUP_TIMEOUT}s")
    if proc.returncode != 0 or not proc.stdout.strip():
        unavailable(f".ci/docker-setup failed (exit {proc.returncode}):\n{tail(proc.stderr)}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def pipe_image(
    base_image: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Image]:
    """The pipe's image, built from the repository's Dockerfile on ``base_image``."""
    tag = f"prefect-trigger:pytest-{uuid.uuid4().hex[:8]}"
    seconds = build_image(base_image, tag, tmp_path_factory.mktemp("image") / "build.log")
    image = Image(tag, base_image, image_size(tag), image_size(base_image), seconds)
    say(
        request.config,
        f"built {tag} on {base_image} in {seconds:.0f}s: {image.size / 1e6:.1f} MB, "
        f"{image.added_mb:.1f} MB over the base",
    )
    try:
        yield image
    finally:
        docker("image", "rm", tag, check=False)  # layers stay cached for the next build


def build_image(base_image: str, tag: str, log: Path, target: str | None = None) -> float:
    """``docker build`` of the repository's Dockerfile (its ``target`` stage) on ``base_image`` as ``tag``,
    the output in ``log``; the seconds it took. A failure fails the test with the log's end."""
    start = time.monotonic()
    with log.open("w") as out:
        try:
            proc = subprocess.run(
                [
                    "docker",
                    "build",
                    "--network",
                    "host",
                    "--build-arg",
                    f"BASE_IMAGE={base_image}",
                    *(["--target", target] if target else []),
                    "-t",
                    tag,
                    str(ROOT),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"docker build did not finish within {BUILD_TIMEOUT}s; see {log}", pytrace=False)
    if proc.returncode != 0:
        what = f"docker build --target {target}" if target else "docker build"
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{tail(log.read_text())}", pytrace=False)
    return time.monotonic() - start


def run_container(image: Image, env: Mapping[str, str], workdir: Path, timeout: float = RUN_TIMEOUT) -> PipeResult:
    """Run the pipe as a Bitbucket step does: ``docker run --rm -v "$PWD:$PWD" -w "$PWD" -e VAR ...``.

    Values travel through the docker client's environment (``-e NAME``), never on its command line.
    """
    args = ["docker", "run", "--rm", "--network", "host", "-v", f"{workdir}:{workdir}", "-w", str(workdir)]
    for name in env:
        args += ["-e", name]
    client_env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG") if k in os.environ}
    proc = subprocess.run(
        [*args, image.tag],
        env={**client_env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return PipeResult(proc.returncode, plain(proc.stdout.decode("utf-8", "replace")))
