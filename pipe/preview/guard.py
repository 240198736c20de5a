"""Before a preview is deployed: a deployment already under its name must be this pull request's
preview (a new commit updates it in place); anything else — a production deployment, another
repository's preview — is never overwritten. And the server must keep labels on deployments, or the
clean-up could never find the preview again."""

from __future__ import annotations

import threading

from pipe.config import Config
from pipe.credentials import Credential
from pipe.deadlines import run_unless_stopped
from pipe.deploy.project import DeploymentSpec
from pipe.errors import DeployError
from pipe.prefect_api import PrefectApi
from pipe.preview import deployments, marks


def check_names(
    config: Config, credential: Credential, previews: list[DeploymentSpec], stop: threading.Event | None = None
) -> None:
    """Runs in the deploy's worker thread (stopped with ``stop``)."""
    run_unless_stopped(_check_names(config, credential, previews), stop, "checking the preview deployments' names")


async def _check_names(config: Config, credential: Credential, previews: list[DeploymentSpec]) -> None:
    build = config.build
    async with PrefectApi(config.api_url, credential, config.ui_url) as api:
        await deployments.require_deployment_labels(api, "checking the preview deployments", "; nothing was deployed")
        for spec in previews:
            for flow in spec.flow_names or (spec.label.partition("/")[0],):  # each name the flow may go by
                existing = await deployments.find_deployment(api, f"{flow}/{spec.name}")
                if existing is None or marks.is_own_preview(existing, build, config.preview.name_template):
                    continue
                raise DeployError(
                    f"deployment {flow}/{spec.name} already exists and is not a preview of pull request "
                    f"#{build.pull_request_id} of {build.repository}; nothing was deployed",
                    "set PREVIEW_NAME to a template that names no existing deployment, e.g. "
                    "'{deployment}-preview-pr-{pr}'",
                )
