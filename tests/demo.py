"""`make demo`: a throwaway Prefect server and worker, a sample flow, and the pipe run exactly as a
Bitbucket step would run it. Everything started here is stopped at the end."""

from __future__ import annotations

import subprocess
import sys
import tempfile

from tests.support.pipe import BITBUCKET_ENV, ROOT
from tests.support.prefect_server import start_server


def main() -> int:
    print("Starting a local Prefect server (SQLite) and a process worker…", flush=True)
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as shared:
            env = {
                **BITBUCKET_ENV,
                "PATH": "/usr/bin:/bin",
                "BITBUCKET_PIPE_SHARED_STORAGE_DIR": shared,
                "PREFECT_API_URL": server.api_url,
                "PREFECT_API_AUTH_STRING": server.auth_string,
                "PREFECT_HOME": f"{shared}/prefect",
                "DEPLOYMENT": "greet/ci",
                "PARAMETERS": '{"name": "Bitbucket"}',
                "TIMEOUT": "300",
            }
            print(
                f'\n$ DEPLOYMENT=greet/ci PARAMETERS=\'{{"name": "Bitbucket"}}\' python -m pipe   (API {server.api_url})\n',
                flush=True,
            )
            code = subprocess.run(
                [sys.executable, "-m", "pipe"], env=env, cwd=ROOT, timeout=600, check=False
            ).returncode
            print(f"\nThe pipe exited with {code}.", flush=True)
            return code
    finally:
        print("Stopping the local Prefect server and worker…", flush=True)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
