"""Running the pipe as a Bitbucket step runs it: Bitbucket's default variables, ``python -m pipe``
with only the step's variables, and what it printed and returned."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
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


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(output: str) -> str:
    """What the pipe printed without its colours."""
    return ANSI.sub("", output)


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


class BackgroundPipe:
    """`python -m pipe` in the background, its output collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path | None = None) -> None:
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipe"],
            env={**base, **env},
            cwd=str(cwd or ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self.output):
                return True
            if self.proc.poll() is not None:
                return predicate(self.output)
            time.sleep(0.1)
        return False

    def stop(self, timeout: float) -> tuple[int | None, float]:
        """SIGTERM, as Bitbucket sends when the step is stopped; the exit code and how long it took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        self.kill()
        self._reader.join(timeout=5)
        return code, took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
