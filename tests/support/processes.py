"""Child processes of the tests (the Prefect server and worker, OpenBao, moto): each runs in its own
process group on a free loopback port, logs to a file, and is stopped with its whole group (and
nothing else) when its fixture ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """One child process in a process group of its own, its output (stdout and stderr) in ``log``."""

    def __init__(
        self, args: list[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.log = log
        with open(log, "wb") as out:  # the child holds its own copy of the file
            self.proc = subprocess.Popen(
                args,
                env=None if env is None else dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, url: str, timeout: float) -> None:
        """Until ``url`` answers 200; fails with the end of the log if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{url} exited early:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{url} did not come up in {timeout} s (log {self.log}):\n{self._log_tail()}")

    def terminate(self) -> None:
        """SIGTERM to the group of the process we started, nothing else."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        self.terminate()
        self.wait_or_kill(timeout)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


def stop_all(processes: list[Process], timeout: float) -> None:
    """Signal every process first, then wait for each: they shut down side by side."""
    for process in reversed(processes):
        process.terminate()
    for process in reversed(processes):
        process.wait_or_kill(timeout)
