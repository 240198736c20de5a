"""The work pools of the selected deployments, asked of the Prefect API before anything is deployed.

Prefect stops at the first deployment whose work pool does not exist — after deploying the ones
before it — so a missing pool found here keeps a deploy from leaving half of its deployments updated.
"""

from __future__ import annotations

import threading

from pipe import console
from pipe.config import Config
from pipe.credentials import Credential
from pipe.deadlines import run_unless_stopped
from pipe.deploy.project import DeploymentSpec, Project
from pipe.errors import DeployError, PrefectError
from pipe.prefect_api import PrefectApi
from pipe.prefect_errors import status_code


def check_work_pools(
    config: Config,
    credential: Credential,
    project: Project,
    selected: list[DeploymentSpec],
    stop: threading.Event | None = None,
) -> None:
    """Ask the API for each work pool first, so a missing pool deploys nothing. Only a clear answer
    (404, 401) stops the pipe; anything else is left to ``prefect deploy``. Runs in the deploy's
    worker thread, which has no event loop of its own."""
    pools: dict[str, list[str]] = {}
    for spec in selected:
        if spec.work_pool and "{{" not in spec.work_pool:
            pools.setdefault(spec.work_pool, []).append(spec.label)
    if not pools:
        return
    try:
        run_unless_stopped(_read_pools(config, credential, project, pools), stop, "checking the work pools")
    except PrefectError as exc:
        if status_code(exc) == 401:
            raise
        console.debug(f"Work pool check skipped ({exc.message}); prefect deploy checks them itself")


async def _read_pools(config: Config, credential: Credential, project: Project, pools: dict[str, list[str]]) -> None:
    async with PrefectApi(config.api_url, credential, config.ui_url) as api:
        for pool, labels in pools.items():
            if await api.read_work_pool(pool) is None:
                raise DeployError(
                    f"{project.shown} references work pool {pool!r} (for {', '.join(labels)}) which does not exist "
                    f"in {config.api_url}; nothing was deployed",
                    f"create it (e.g. 'prefect work-pool create {pool} --type process') or fix work_pool.name",
                )
