"""Entry point: the one place errors are caught and turned into an exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from pipe import __version__, console
from pipe.errors import PipeError, Stopped
from pipe.secret import mask

if TYPE_CHECKING:
    from pipe.config import Config


def main() -> int:
    from pipe.config import debug_requested, load

    debug = debug_requested()
    console.setup(debug)
    console.info(f"prefect-trigger {__version__}")
    try:
        config = load()
        _leave_the_repository()
        return asyncio.run(_run_until_stopped(config))
    except PipeError as exc:
        if debug:
            console.plain(mask(traceback.format_exc()))
        console.fail(exc.line())
        return exc.exit_code
    except KeyboardInterrupt:
        console.fail("Interrupted")
        return 130
    except Exception as exc:
        if debug:
            console.plain(mask(traceback.format_exc()))
        console.fail(
            f"Unexpected error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}). "
            "Re-run with DEBUG=true and report it with the output"
        )
        return 1


def _leave_the_repository() -> None:
    """Prefect's settings read ``prefect.toml``, ``pyproject.toml`` ``[tool.prefect]`` and ``.env`` from
    the working directory, and a step runs the pipe in the user's clone: a file there could switch off
    TLS verification or add headers to every request of the pipe's own client. The pipe works from its
    package's directory instead (``ACTION=deploy`` runs Prefect's CLI in the clone on purpose, with TLS
    verification and the credential pinned in its environment)."""
    os.chdir(Path(__file__).resolve().parent)


async def _run_until_stopped(config: Config) -> int:
    """Run the pipe; SIGTERM/SIGINT (a stopped or timed-out step) cancel it so it can clean up."""
    from pipe.run import run

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopped = False

    def on_signal() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await run(config)
    except asyncio.CancelledError:
        if stopped:
            if config.action == "cleanup-previews":  # its deletions say themselves what was done
                what = "before any preview was deleted"
            elif config.deploys:
                what = "while deploying; some deployments may already be updated"
            else:
                what = "before a flow run was created; nothing was started"
            raise Stopped(f"The step was stopped {what}") from None
        raise


if __name__ == "__main__":
    sys.exit(main())
