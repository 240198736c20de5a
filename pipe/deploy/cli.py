"""Running ``prefect --no-prompt deploy``: the Prefect CLI of the pipe's image, as a subprocess in the
clone, never prompting, in the environment :mod:`~pipe.deploy.environment` makes.

It prints plain text (no colours, no wrapping, no panels), streamed into the build log line by line,
masked; a traceback is reduced to its exception line unless ``DEBUG``. A timeout or a cancel stops
its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipe import console
from pipe.errors import DeployError
from pipe.remote_text import one_line

# Seconds the CLI gets to exit after SIGTERM (a build step may be running) before SIGKILL.
KILL_GRACE_SECONDS = 5.0
PREFIX = "prefect deploy │"

_CREATED = re.compile(r"Deployment '(.+?)' successfully created with id '([0-9a-fA-F-]{36})'")
_BOX_CHARS = frozenset("╭╮╰╯─│━┃┏┓┗┛═║╔╗╚╝ ")
_CHAIN_LINES = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)


@dataclass
class CliOutput:
    """The CLI's output, cleaned, as it streamed by."""

    debug: bool
    lines: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)  # the last line of each traceback, in order
    deployed: list[str] = field(default_factory=list)  # 'flow/deployment' of each one created or updated
    hidden: int = 0
    _in_traceback: bool = False

    def feed(self, raw: str) -> None:
        line = _unbox(raw)
        if line is None:
            return
        self.lines.append(line)
        if match := _CREATED.search(line):
            self.deployed.append(match.group(1))
        if line.startswith("Traceback (most recent call last):"):
            self._in_traceback = True
            self._hide(line)
            return
        if self._in_traceback:
            if not line.strip() or line[:1].isspace():
                self._hide(line)
                return
            self._in_traceback = False
            self.exceptions.append(line)
        elif line in _CHAIN_LINES:
            self._hide(line)
            return
        if line.strip():
            console.plain(f"{PREFIX} {one_line(line)}")  # a \r in build output starts no line of its own

    def _hide(self, line: str) -> None:
        if self.debug:
            if line.strip():
                console.plain(f"{PREFIX} {one_line(line)}")  # a \r in build output starts no line of its own
        else:
            self.hidden += 1


@dataclass
class CliResult:
    code: int | None  # None when the pipe stopped the CLI
    output: CliOutput
    timed_out: bool = False
    cancelled: bool = False


# --------------------------------------------------------------------------------------------------
# Running the CLI


def prefect_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefect")
    except PackageNotFoundError:  # pragma: no cover - the image always has it
        return "(unknown version)"


def run_deploy(
    text: str,
    file_name: str,
    env: Mapping[str, str],
    root: Path,
    timeout: float,
    debug: bool,
    cancel: threading.Event | None = None,
) -> CliResult:
    """``prefect --no-prompt deploy --all`` on ``text``, the derived prefect.yaml, written as
    ``file_name`` to a temporary directory for the run (the repository's file is never touched)."""
    with tempfile.TemporaryDirectory(prefix="prefect-trigger-deploy-") as tmp:
        copy_path = Path(tmp) / file_name
        copy_path.write_text(text, "utf-8")
        argv = [
            sys.executable,
            "-P",  # never import a 'prefect' directory of the repository instead of Prefect
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(copy_path),
        ]
        return run_cli(argv, env, root, timeout, debug, cancel)


def run_cli(
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    debug: bool,
    cancel: threading.Event | None = None,
) -> CliResult:
    """Run the CLI, streaming its output line by line; stop it at ``timeout`` or when ``cancel`` is set."""
    output = CliOutput(debug=debug)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its build steps too
        )
    except OSError as exc:
        raise DeployError(f"cannot start the Prefect CLI ({exc})", "report this with the output") from None
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in iter(proc.stdout.readline, b""):
                lines.put(raw)
        lines.put(None)

    reader = threading.Thread(target=pump, name="prefect-deploy-output", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    result = CliResult(code=None, output=output)
    try:
        while True:
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.timed_out = True
                break
            try:
                raw = lines.get(timeout=min(0.25, remaining))
            except queue.Empty:
                continue
            if raw is None:
                break
            output.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if result.cancelled or result.timed_out:
            _stop(proc)
        else:
            try:
                result.code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                result.timed_out = True
                _stop(proc)
    finally:
        if proc.poll() is None:
            _stop(proc)
        reader.join(timeout=5)
        proc.stdout.close()
    return result


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, KILL_GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _unbox(raw: str) -> str | None:
    """Rich panels, flattened: border lines dropped, ``│ text │`` reduced to the text."""
    line = raw.rstrip()
    stripped = line.strip()
    if stripped and set(stripped) <= _BOX_CHARS:
        return None
    if len(stripped) >= 2 and stripped[0] in "│┃║" and stripped[-1] in "│┃║":
        return stripped[1:-1].strip()
    return line
