"""Old Prefect servers for the compatibility tier: each version in its own venv (made by
``.ci/compat-setup``, which this calls too: it is idempotent and quick once installed), started with
the machinery of ``tests/support/prefect_server.py`` and that venv's own Prefect."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.pipe import ROOT
from tests.support.prefect_server import PrefectServer
from tests.support.processes import free_port

COMPAT_ROOT = Path(os.environ.get("COMPAT_ROOT", "/tmp/prefect-trigger-compat"))
# Keep in step with TIER_VERSIONS in .ci/compat-setup.
LOWEST = "3.0.11"  # pipe.prefect_compat.LOWEST_SUPPORTED
MIDDLE = "3.4.25"
TOO_OLD = "2.20.27"


def venv_python(version: str) -> str:
    """The interpreter of that version's venv, installed first when missing."""
    python = COMPAT_ROOT / version / "bin" / "python"
    if not (COMPAT_ROOT / version / ".installed").exists():
        setup = subprocess.run(
            [str(ROOT / ".ci" / "compat-setup"), version],
            env=dict(os.environ, COMPAT_ROOT=str(COMPAT_ROOT)),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert setup.returncode == 0, f".ci/compat-setup {version} failed:\n{setup.stderr[-3000:]}"
    return str(python)


def old_server(version: str, *, api_only: bool = False) -> PrefectServer:
    """That version's server; with its work pool, the sample deployments and a worker unless ``api_only``."""
    home = Path(tempfile.mkdtemp(prefix=f"prefect-trigger-compat-{version}-"))
    server = PrefectServer(home=home, port=free_port(), python=venv_python(version))
    try:
        return server.start_api() if api_only else server.start()
    except BaseException:
        server.stop()
        raise


# What Prefect's own client retries: a server under load answers 503 (its database busy) or 429.
TRANSIENT = (429, 502, 503)
ATTEMPTS = 5


def api(server: PrefectServer, method: str, path: str, body: Any = None) -> Any:
    """One plain HTTP call to the server (the 3.9 SDK's requests carry fields old servers refuse).

    Every call the tests make this way is a read or an upsert, so a transient answer is retried, a
    bounded number of times, as Prefect's client would."""
    import base64

    request = urllib.request.Request(
        f"{server.api_url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(server.auth_string.encode()).decode(),
        },
    )
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code not in TRANSIENT or attempt == ATTEMPTS:
                raise
            time.sleep(_retry_after(error.headers.get("Retry-After"), attempt))
    raise AssertionError("unreachable")


def _retry_after(header: str | None, attempt: int) -> float:
    """The server's Retry-After when it gives seconds, else a growing pause; never over 10 s."""
    try:
        return min(float(header or attempt), 10.0)
    except ValueError:
        return float(attempt)


def count_flow_runs(server: PrefectServer) -> int:
    return int(api(server, "POST", "/flow_runs/count", {}))
