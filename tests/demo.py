"""`make demo`: a throwaway Prefect server and worker, a sample flow, and the pipe run exactly as a
Bitbucket step would run it, reporting to a local stand-in of Bitbucket's Pipelines auth proxy (which
checks what it receives, as Bitbucket would). Everything started here is stopped at the end."""

from __future__ import annotations

import subprocess
import sys
import tempfile

from tests.bitbucket.standin import BitbucketStandIn
from tests.support.pipe import BITBUCKET_ENV, ROOT
from tests.support.prefect_server import start_server


def main() -> int:
    print("Starting a local Prefect server (SQLite) and a process worker…", flush=True)
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as shared, BitbucketStandIn() as bitbucket:
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
                "BITBUCKET_PIPELINES_PROXY": bitbucket.proxy_url,
            }
            print(
                f'\n$ DEPLOYMENT=greet/ci PARAMETERS=\'{{"name": "Bitbucket"}}\' python -m pipe   (API {server.api_url})\n',
                flush=True,
            )
            code = subprocess.run(
                [sys.executable, "-m", "pipe"], env=env, cwd=ROOT, timeout=600, check=False
            ).returncode
            print(f"\nThe pipe exited with {code}.", flush=True)
            for report in bitbucket.reports()[-1:]:
                print(
                    f"The Code Insights report went to the local stand-in of Bitbucket's Pipelines proxy "
                    f"({bitbucket.proxy_url}): {report['title']}: {report['result']}"
                    + (f" (problems: {bitbucket.problems})" if bitbucket.problems else ""),
                    flush=True,
                )
            return code
    finally:
        print("Stopping the local Prefect server and worker…", flush=True)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
