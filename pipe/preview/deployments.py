"""What previews ask of the Prefect API: finding deployments by tag and name, labelling them, their runs
that have not ended, deleting them. Each call goes through :class:`~pipe.prefect_api.PrefectApi`'s one
session (its deadline, retries and one-line errors)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Literal

from pipe import console
from pipe.config import DeploymentRef
from pipe.errors import DeploymentNotFound, PrefectError
from pipe.prefect_api import PAGE, PrefectApi
from pipe.prefect_compat import LABELS_SINCE, accepts_labels, filter_body

MAX_LISTED = 5000  # deployments (or runs) read by one listing: 25 pages

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse


async def find_deployment(api: PrefectApi, name: str) -> DeploymentResponse | None:
    """The deployment ``flow/deployment``, or None when there is none."""
    try:
        return await api.read_deployment(DeploymentRef(name))
    except DeploymentNotFound:
        return None


async def find_deployment_by_id(api: PrefectApi, deployment_id: Any) -> DeploymentResponse | None:
    """The deployment with this id, or None when it is gone."""
    from prefect.exceptions import ObjectNotFound

    try:
        return await api.call("reading the deployment", api.client.read_deployment(deployment_id))
    except ObjectNotFound:
        return None


async def require_deployment_labels(api: PrefectApi, doing: str, consequence: str = "") -> None:
    """Refuse a server that keeps no labels on deployments: previews are found again by them."""
    await api.contact(doing)
    if not accepts_labels(api.server_version):
        raise PrefectError(
            f"the Prefect server at {api.host} ({api.server_version}) keeps no labels on deployments, which "
            f"previews need to be found again{consequence}",
            f"upgrade the server to Prefect {LABELS_SINCE} or newer",
        )


async def label_deployment(
    api: PrefectApi, deployment: DeploymentResponse, labels: dict[str, str]
) -> DeploymentResponse:
    """Add ``labels`` to a deployment. Only creation takes labels (an update has no such field), so
    this is the create call's upsert with the deployment's own name and flow: the server changes
    just the fields sent, and resets ``parameters`` unless they are sent too."""
    from prefect.client.schemas.responses import DeploymentResponse

    await require_deployment_labels(api, "labelling the deployment")
    body = {
        "name": deployment.name,
        "flow_id": str(deployment.flow_id),
        "labels": {**(deployment.labels or {}), **labels},
        "parameters": deployment.parameters,
    }
    response = await api.call(
        f"labelling deployment {deployment.name!r}", api.client.request("POST", "/deployments/", json=body)
    )
    return DeploymentResponse.model_validate(response.json())


async def deployments_tagged(api: PrefectApi, tag: str) -> list[DeploymentResponse]:
    """Every deployment with ``tag``."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.client.schemas.responses import DeploymentResponse

    filters = {"deployments": DeploymentFilter(tags=DeploymentFilterTags(all_=[tag]))}
    items, capped = await _every_page(api, f"reading the deployments tagged {tag!r}", "/deployments/filter", filters)
    if capped:
        console.warning(f"More than {MAX_LISTED} deployments are tagged {tag!r}: only the first are looked at")
    return DeploymentResponse.model_validate_list(items)


async def flow_names(api: PrefectApi, flow_ids: list[Any]) -> dict[Any, str]:
    """The names of these flows, a page of them per request."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId
    from prefect.client.schemas.objects import Flow

    ids = list(dict.fromkeys(flow_ids))
    names: dict[Any, str] = {}
    for start in range(0, len(ids), PAGE):
        page = ids[start : start + PAGE]
        body = filter_body(flows=FlowFilter(id=FlowFilterId(any_=page)), limit=len(page))
        response = await api.call("reading the flows' names", api.client.request("POST", "/flows/filter", json=body))
        names.update((flow.id, flow.name) for flow in Flow.model_validate_list(response.json()))
    return names


async def unfinished_flow_runs(api: PrefectApi, deployment_id: Any) -> list[FlowRun]:
    """The deployment's runs that have not ended (scheduled, pending, running, paused, cancelling)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import FlowRun, StateType

    going = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]
    filters = {
        "deployments": DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        "flow_runs": FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=going))),
    }
    items, _ = await _every_page(api, "reading the deployment's unfinished flow runs", "/flow_runs/filter", filters)
    return FlowRun.model_validate_list(items)


async def delete_deployment(api: PrefectApi, deployment_id: Any) -> None:
    """Delete a deployment (one already gone is fine)."""
    from prefect.exceptions import ObjectNotFound

    with contextlib.suppress(ObjectNotFound):
        await api.call("deleting the deployment", api.client.delete_deployment(deployment_id))


async def _every_page(
    api: PrefectApi, doing: str, path: Literal["/deployments/filter", "/flow_runs/filter"], filters: dict[str, Any]
) -> tuple[list[Any], bool]:
    """What a ``/…/filter`` endpoint answers, page by page, up to MAX_LISTED; whether that cap was hit."""
    found: list[Any] = []
    while True:
        body = filter_body(**filters, limit=PAGE, offset=len(found))
        response = await api.call(doing, api.client.request("POST", path, json=body))
        page = response.json()
        found.extend(page)
        if len(page) < PAGE:
            return found, False
        if len(found) >= MAX_LISTED:
            return found, True
