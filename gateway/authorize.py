"""Decide one request: the endpoint's need (from :mod:`gateway.rights`) against the caller's grant.

Rights scoped to deployments (``run``, ``deploy``) need the ``flow/deployment`` name of what the
request touches: taken from the path, from the body, or read from the server (with the gateway's
credential) by id. Those names are cached: a deployment's id keeps its name, a flow's id its name and
a flow run its deployment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.policy import Grant
from gateway.proxy import Upstream
from gateway.rights import Match, Need

CACHE_SIZE = 10_000
DEPLOYMENT_RESOURCE = "prefect.deployment."


@dataclass(frozen=True)
class Decision:
    allowed: bool
    missing: str | None = None  # the right that would have allowed it
    deployment: str | None = None  # flow/deployment, where known
    deployment_id: str | None = None
    flow_run_id: str | None = None


# The tag of the pipe's preview deployments: the only deployments a deploy right may delete.
PREVIEW_TAG = "preview"


class Names:
    """Names of deployments and flows, and deployments of flow runs, read from the server and cached."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._deployments: dict[str, str] = {}
        self._flows: dict[str, str] = {}
        self._runs: dict[str, str | None] = {}
        self._previews: dict[str, bool] = {}

    async def flow(self, flow_id: str) -> str | None:
        if flow_id not in self._flows:
            body = await self._upstream.read_json(f"/flows/{_safe(flow_id)}")
            if body is None or not isinstance(body.get("name"), str):
                return None
            _put(self._flows, flow_id, body["name"])
        return self._flows[flow_id]

    async def deployment(self, deployment_id: str) -> str | None:
        if deployment_id not in self._deployments:
            body = await self._upstream.read_json(f"/deployments/{_safe(deployment_id)}")
            if body is None or not isinstance(body.get("name"), str) or not isinstance(body.get("flow_id"), str):
                return None
            flow = await self.flow(body["flow_id"])
            if flow is None:
                return None
            _put(self._deployments, deployment_id, f"{flow}/{body['name']}")
        return self._deployments[deployment_id]

    async def is_preview(self, deployment_id: str) -> bool:
        """Whether the deployment is tagged ``preview`` (what ACTION=preview deploys)."""
        if deployment_id not in self._previews:
            body = await self._upstream.read_json(f"/deployments/{_safe(deployment_id)}")
            tags = body.get("tags") if body is not None else None
            _put(self._previews, deployment_id, isinstance(tags, list) and PREVIEW_TAG in tags)
        return self._previews[deployment_id]

    async def run_deployment(self, flow_run_id: str) -> tuple[str | None, str | None]:
        """The flow run's deployment id and name (None, None for a missing run or one without deployment)."""
        if flow_run_id not in self._runs:
            body = await self._upstream.read_json(f"/flow_runs/{_safe(flow_run_id)}")
            if body is None:
                return None, None
            found = body.get("deployment_id")
            _put(self._runs, flow_run_id, found if isinstance(found, str) else None)
        deployment_id = self._runs[flow_run_id]
        if deployment_id is None:
            return None, None
        return deployment_id, await self.deployment(deployment_id)


async def decide(match: Match, grant: Grant, body: bytes, names: Names) -> Decision:
    need = match.endpoint.need
    params = match.params
    if need is Need.DENY:
        return Decision(False, "none: this endpoint is not available through the gateway")
    if need is Need.ANY:
        return Decision(True)
    if need is Need.READ:
        return Decision(grant.read, None if grant.read else "read")
    if need is Need.POOL_READ:
        ok = grant.read or bool(grant.deploy)
        return Decision(ok, None if ok else "read, or deploy")

    if need is Need.DEPLOYMENT_NAME_READ:
        full_name = f"{params['flow_name']}/{params['deployment_name']}"
        ok = grant.read or grant.may_run(full_name) or grant.may_deploy(full_name)
        return Decision(ok, None if ok else f"read, or run/deploy: {full_name}", deployment=full_name)

    if need is Need.DEPLOYMENT_OWNED_DELETE:
        resource = params["resource_id"]
        if not resource.startswith(DEPLOYMENT_RESOURCE):
            return Decision(False, "none: only a deployment's own automations can be cleared through the gateway")
        params = {"id": resource.removeprefix(DEPLOYMENT_RESOURCE)}
        need = Need.DEPLOYMENT_DEPLOY

    if need is Need.PREVIEW_DELETE:  # deploy rights do not reach production deployments' deletion
        deployment_id = params["id"]
        name = await names.deployment(deployment_id)
        ok = name is not None and grant.may_deploy(name) and await names.is_preview(deployment_id)
        missing = f"deploy: {name or 'deployment ' + deployment_id}, of a deployment tagged {PREVIEW_TAG!r}"
        return Decision(ok, None if ok else missing, deployment=name, deployment_id=deployment_id)

    if need in (Need.DEPLOYMENT_READ, Need.DEPLOYMENT_RUN, Need.DEPLOYMENT_DEPLOY):
        deployment_id = params["id"]
        if need is Need.DEPLOYMENT_READ and grant.read:
            return Decision(True, deployment_id=deployment_id)
        name = await names.deployment(deployment_id)
        if need is Need.DEPLOYMENT_READ:
            ok = name is not None and (grant.may_run(name) or grant.may_deploy(name))
            missing = f"read, or run/deploy: {name or 'deployment ' + deployment_id}"
        elif need is Need.DEPLOYMENT_RUN:
            ok = name is not None and grant.may_run(name)
            missing = f"run: {name or 'deployment ' + deployment_id + ' (not found)'}"
        else:
            ok = name is not None and grant.may_deploy(name)
            missing = f"deploy: {name or 'deployment ' + deployment_id + ' (not found)'}"
        return Decision(ok, None if ok else missing, deployment=name, deployment_id=deployment_id)

    if need in (Need.FLOW_RUN_READ, Need.FLOW_RUN_RUN):
        flow_run_id = params["id"]
        if need is Need.FLOW_RUN_READ and grant.read:
            return Decision(True, flow_run_id=flow_run_id)
        run_deployment_id, run_deployment = await names.run_deployment(flow_run_id)
        ok = run_deployment is not None and grant.may_run(run_deployment)
        what = run_deployment or f"the deployment of flow run {flow_run_id} (none found)"
        missing = f"read, or run: {what}" if need is Need.FLOW_RUN_READ else f"run: {what}"
        return Decision(
            ok,
            None if ok else missing,
            deployment=run_deployment,
            deployment_id=run_deployment_id,
            flow_run_id=flow_run_id,
        )

    if need is Need.FLOW_NAME_READ:
        flow_name = params["name"]
        ok = grant.read or grant.may_deploy_flow(flow_name)
        return Decision(ok, None if ok else f"read, or deploy: {flow_name}/*")

    fields = _json_object(body)
    if need is Need.FLOW_CREATE:
        new_flow = fields.get("name")
        ok = isinstance(new_flow, str) and grant.may_deploy_flow(new_flow)
        shown = new_flow if isinstance(new_flow, str) else "<no flow name>"
        return Decision(ok, None if ok else f"deploy: {shown}/*")

    if need is Need.DEPLOYMENT_CREATE:
        flow_id, deployment = fields.get("flow_id"), fields.get("name")
        its_flow = await names.flow(flow_id) if isinstance(flow_id, str) else None
        created = f"{its_flow}/{deployment}" if its_flow and isinstance(deployment, str) else None
        ok = created is not None and grant.may_deploy(created)
        return Decision(ok, None if ok else f"deploy: {created or '<unknown flow or name>'}", deployment=created)

    return Decision(False, "none: this endpoint is not available through the gateway")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _safe(identifier: str) -> str:
    from urllib.parse import quote

    return quote(identifier, safe="")


def _put(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = value
