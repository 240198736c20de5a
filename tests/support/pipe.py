"""Running the pipe as a Bitbucket step runs it: Bitbucket's default variables, ``python -m pipe``
with only the step's variables, and what it printed and returned."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

# Bitbucket's default variables for a push to main (values shaped like the real ones).
BITBUCKET_ENV = {
    "CI": "true",
    "BITBUCKET_COMMIT": "0f3c1e2d4b5a69788796a5b4c3d2e1f00f1e2d3c",
    "BITBUCKET_BRANCH": "main",
    "BITBUCKET_BUILD_NUMBER": "42",
    "BITBUCKET_WORKSPACE": "acme",
    "BITBUCKET_REPO_SLUG": "data-pipelines",
    "BITBUCKET_REPO_FULL_NAME": "acme/data-pipelines",
    "BITBUCKET_REPO_OWNER": "acme",
    "BITBUCKET_REPO_UUID": "{1b2c3d4e-0000-4000-8000-000000000001}",
    "BITBUCKET_PIPELINE_UUID": "{aaaaaaaa-0000-4000-8000-000000000002}",
    "BITBUCKET_STEP_UUID": "{bbbbbbbb-0000-4000-8000-000000000003}",
    "BITBUCKET_STEP_RUN_NUMBER": "1",
    "BITBUCKET_GIT_HTTP_ORIGIN": "http://bitbucket.org/acme/data-pipelines",
}


def step_uuid() -> str:
    """A fresh step UUID: a unique step, so idempotency keys never collide between tests."""
    return "{" + os.urandom(4).hex() + "-0000-4000-8000-" + os.urandom(6).hex() + "}"


@dataclass
class PipeResult:
    code: int
    output: str

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"exit {self.code}\n{self.output}"


def run_pipe(env: Mapping[str, str], timeout: float = 300, cwd: Path | None = None) -> PipeResult:
    """Run ``python -m pipe`` with only the given variables (plus PATH/HOME), as a step would."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "SSL_CERT_FILE") if k in os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "pipe"],
        env={**base, **env},
        cwd=str(cwd or ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    return PipeResult(proc.returncode, proc.stdout.decode("utf-8", "replace"))
