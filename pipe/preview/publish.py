"""After ``prefect deploy``: the previews get their labels (the repository and the pull request, which
the CLI cannot set) and are said, with their links, in the build log and on Bitbucket."""

from __future__ import annotations

from dataclasses import dataclass

from pipe import console
from pipe.config import Config, DeploymentRef
from pipe.errors import PrefectError
from pipe.prefect_api import PrefectApi
from pipe.preview import deployments, marks
from pipe.remote_text import one_line


@dataclass(frozen=True)
class Preview:
    """A preview deployment as deployed: what the reports link to."""

    name: str  # flow-name/deployment-name
    deployment_id: str
    url: str
    version: str | None
    work_pool: str | None


async def label_previews(api: PrefectApi, config: Config, names: list[str]) -> list[Preview]:
    """Label each deployed preview (one at a time: a self-hosted server's SQLite takes one writer)."""
    labels = marks.labels(config.build)
    previews = []
    for name in names:
        deployment = await api.read_deployment(DeploymentRef(name))
        own = dict(deployment.labels or {})
        for key in (marks.REPOSITORY_LABEL, marks.PULL_REQUEST_LABEL):
            if own.get(key) not in (None, labels.get(key)):
                raise PrefectError(
                    f"deployment {one_line(name)} was labelled {key}={one_line(str(own[key]))}, not this build's; its "
                    "labels were left as they were",
                    "set PREVIEW_NAME to a template that names no existing deployment, e.g. "
                    "'{deployment}-preview-pr-{pr}', and check that deployment",
                )
        labelled = await deployments.label_deployment(api, deployment, labels)
        preview = Preview(
            name=name,
            deployment_id=str(labelled.id),
            url=api.deployment_url(labelled.id),
            version=labelled.version,
            work_pool=labelled.work_pool_name,
        )
        version = f" (version {preview.version})" if preview.version else ""
        console.info(
            f"Preview deployment {name}{version} of pull request #{config.build.pull_request_id}: {preview.url}"
        )
        previews.append(preview)
    return previews
