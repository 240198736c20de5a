"""Every placeholder of the deployed prefect.yaml that names something outside it, checked before
anything is deployed: ``{{ $NAME }}`` against the CLI's environment, ``{{ prefect.blocks.<type>.<name> }}``
and ``{{ prefect.variables.<name> }}`` against the server.

Prefect does not stop at a missing one: an unset variable or a missing Prefect variable becomes an
empty string, and a pull step's block is only looked up by the worker — the deploy exits 0 and every
run crashes with ``Block not found`` in the worker's log.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from pipe import console
from pipe.config import Config
from pipe.credentials import Credential
from pipe.deadlines import run_unless_stopped
from pipe.deploy.placeholders import block_references, placeholders, variable_references
from pipe.deploy.project import Project
from pipe.errors import DeployError, PrefectError
from pipe.prefect_api import PrefectApi
from pipe.prefect_errors import status_code


def deployed_parts(document: dict[str, Any]) -> list[Any]:
    """What Prefect resolves placeholders in: the steps and the selected deployments (``definitions``,
    a file's anchors, are read only through the deployments that use them)."""
    return [document.get("build"), document.get("push"), document.get("pull"), document["deployments"]]


def check_environment_references(project: Project, document: dict[str, Any], env: Mapping[str, str]) -> None:
    """Each ``{{ $NAME }}`` names a variable the CLI gets. A pipe gets only the variables its step's
    ``variables:`` block names (and Bitbucket's own), so a missing one is usually missing there."""
    missing = sorted(placeholders(deployed_parts(document)) - set(env))
    if not missing:
        return
    shown = ", ".join(f"{{{{ ${name} }}}}" for name in missing)
    pull = placeholders(document.get("pull")) | {
        name for entry in document["deployments"] for name in placeholders(entry.get("pull"))
    }
    if any(name.startswith("BITBUCKET_") and name in pull for name in missing):
        fix = "use a Bitbucket variable every build sets (BITBUCKET_COMMIT), or remove it from the pull step"
    else:
        fix = f"add {', '.join(missing)} to the pipe's variables: block (a pipe gets only the variables it is given)"
    raise DeployError(
        f"{'a pull step in ' if set(missing) & pull else ''}{project.shown} uses {shown}, which this build does not "
        "set; nothing was deployed",
        fix,
    )


def check_server_references(
    config: Config,
    credential: Credential,
    project: Project,
    document: dict[str, Any],
    stop: threading.Event | None = None,
) -> None:
    """Each block and variable the file names exists on the server. Only a clear answer (404, 401)
    stops the pipe; anything else is left to ``prefect deploy``. Runs in the deploy's worker thread,
    which has no event loop of its own."""
    blocks = sorted(block_references(deployed_parts(document)))
    variables = sorted(variable_references(deployed_parts(document)))
    if not blocks and not variables:
        return
    try:
        missing = run_unless_stopped(
            _missing(config, credential, blocks, variables), stop, "checking the blocks and variables"
        )
    except PrefectError as exc:
        if status_code(exc) == 401:
            raise
        console.debug(f"Block and variable check skipped ({exc.message}); prefect deploy reads them itself")
        return
    if missing:
        raise DeployError(
            f"{project.shown} references {', '.join(missing)}, which {'does' if len(missing) == 1 else 'do'} not "
            f"exist in {config.api_url}; nothing was deployed",
            "create them (a block in the UI or with 'prefect block create', a variable with "
            "'prefect variable set NAME VALUE') or fix the names",
        )


async def _missing(
    config: Config, credential: Credential, blocks: list[tuple[str, str]], variables: list[str]
) -> list[str]:
    missing = []
    async with PrefectApi(config.api_url, credential, config.ui_url) as api:
        for slug, name in blocks:
            if not await api.block_exists(slug, name):
                missing.append(f"block {slug}/{name}")
        for name in variables:
            if not await api.variable_exists(name):
                missing.append(f"variable {name}")
    return missing
