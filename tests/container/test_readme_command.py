"""README's "Locally, exactly as Bitbucket runs it" command, run as written in a git checkout: only the
deployment's name and the credential's kind (a local server's auth string) are swapped for the test's."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from pipe import __version__
from tests.container.conftest import Image, docker
from tests.support.pipe import ROOT
from tests.support.prefect_server import PrefectServer

pytestmark = [pytest.mark.container, pytest.mark.prefect]


def readme_command() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Locally, exactly as Bitbucket runs it")
    block = readme[
        readme.index("```bash\n", start) + len("```bash\n") : readme.index("```", readme.index("```bash\n", start) + 7)
    ]
    lines = [line for line in block.splitlines() if not line.startswith("make ")]  # the image is built by the tier
    return "\n".join(lines)


def test_the_documented_docker_run_works_in_a_checkout(
    pipe_image: Image, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    docker("tag", pipe_image.tag, f"org/prefect-trigger:{__version__}")
    checkout = tmp_path / "data-pipelines"
    checkout.mkdir()
    git = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["remote", "add", "origin", "https://bitbucket.org/acme/data-pipelines.git"],
        ["commit", "-q", "--allow-empty", "-m", "one"],
    ):
        subprocess.run(["git", *args], cwd=checkout, check=True, env={**os.environ, **git})
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=checkout, check=True, capture_output=True, text=True
    ).stdout.strip()

    command = (
        readme_command().replace("etl/production", "greet/ci").replace("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_API_AUTH_STRING": prefect_server.auth_string,
    }
    result = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert f"the commit comes from the git checkout in {checkout}" in output, output
    assert f"data-pipelines-local-main-{sha[:7]}" in output, output  # named as a build would name it
    assert re.search(r"✔ Flow run .* completed", output), output
