"""Every endpoint of Prefect 3.9's server API and the right it needs; anything not listed is denied.

Paths are relative to the API root (``/api``) and spelled as Prefect declares them (the forwarded path
is this spelling, with the request's parameters). ``{name}`` segments match any one segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote


class Need(Enum):
    """What a request needs; the comments say which right grants it."""

    DENY = "deny"  # nobody through the gateway
    ANY = "any"  # any verified identity that some rule matches (health, version)
    READ = "read"
    DEPLOYMENT_READ = "deployment-read"  # {id}: read, or run/deploy of that deployment
    DEPLOYMENT_NAME_READ = "deployment-name-read"  # {flow_name}/{deployment_name}: likewise
    DEPLOYMENT_RUN = "deployment-run"  # {id}: run of that deployment
    DEPLOYMENT_DEPLOY = "deployment-deploy"  # {id}: deploy of that deployment
    PREVIEW_DELETE = "preview-delete"  # {id}: deploy of that deployment, and it is tagged 'preview'
    DEPLOYMENT_CREATE = "deployment-create"  # body name + flow_id: deploy of that deployment
    DEPLOYMENT_OWNED_DELETE = "deployment-owned-delete"  # {resource_id} prefect.deployment.<id>: deploy of it
    FLOW_CREATE = "flow-create"  # body name: deploy of some deployment of that flow
    FLOW_NAME_READ = "flow-name-read"  # {name}: read, or deploy of some deployment of that flow
    FLOW_RUN_READ = "flow-run-read"  # {id}: read, or run of the flow run's deployment
    FLOW_RUN_RUN = "flow-run-run"  # {id}: run of the flow run's deployment
    POOL_READ = "pool-read"  # read, or any deploy right (`prefect deploy` reads the pool and its workers)


D, A, R = Need.DENY, Need.ANY, Need.READ
HTTP = "HTTP"
WS = "WEBSOCKET"

# (method, path, need). Reads of variables, blocks' documents, artifacts, automations, saved searches
# and concurrency limits are denied on purpose: they are not among the rights a pipeline step needs,
# and variables and block documents can hold secrets.
TABLE: tuple[tuple[str, str, Need], ...] = (
    ("GET", "/admin/settings", D),
    ("GET", "/admin/storage", D),
    ("PUT", "/admin/storage", D),
    ("DELETE", "/admin/storage", D),
    ("GET", "/admin/version", A),
    ("POST", "/artifacts/", D),
    ("POST", "/artifacts/count", D),
    ("POST", "/artifacts/filter", D),
    ("POST", "/artifacts/latest/count", D),
    ("POST", "/artifacts/latest/filter", D),
    ("GET", "/artifacts/{id}", D),
    ("PATCH", "/artifacts/{id}", D),
    ("DELETE", "/artifacts/{id}", D),
    ("GET", "/artifacts/{key}/latest", D),
    ("POST", "/automations/", D),
    ("POST", "/automations/count", D),
    ("POST", "/automations/filter", D),
    # `prefect deploy` clears the deployment's own automations (its triggers) after every create/update.
    ("DELETE", "/automations/owned-by/{resource_id}", Need.DEPLOYMENT_OWNED_DELETE),
    ("GET", "/automations/related-to/{resource_id}", D),
    ("POST", "/automations/templates/validate", D),
    ("PUT", "/automations/{id}", D),
    ("PATCH", "/automations/{id}", D),
    ("DELETE", "/automations/{id}", D),
    ("GET", "/automations/{id}", D),
    ("GET", "/block_capabilities/", R),
    ("POST", "/block_documents/", D),
    ("POST", "/block_documents/count", D),
    ("POST", "/block_documents/filter", D),
    ("GET", "/block_documents/{id}", D),
    ("DELETE", "/block_documents/{id}", D),
    ("PATCH", "/block_documents/{id}", D),
    ("POST", "/block_schemas/", D),
    ("GET", "/block_schemas/checksum/{checksum}", R),
    ("POST", "/block_schemas/filter", R),
    ("DELETE", "/block_schemas/{id}", D),
    ("GET", "/block_schemas/{id}", R),
    ("POST", "/block_types/", D),
    ("POST", "/block_types/filter", R),
    ("POST", "/block_types/install_system_block_types", D),
    ("GET", "/block_types/slug/{slug}", R),
    ("GET", "/block_types/slug/{slug}/block_documents", D),
    ("GET", "/block_types/slug/{slug}/block_documents/name/{block_document_name}", D),
    ("GET", "/block_types/{id}", R),
    ("PATCH", "/block_types/{id}", D),
    ("DELETE", "/block_types/{id}", D),
    ("GET", "/collections/views/{view}", D),
    ("POST", "/concurrency_limits/", D),
    ("POST", "/concurrency_limits/decrement", D),
    ("POST", "/concurrency_limits/filter", D),
    ("POST", "/concurrency_limits/increment", D),
    ("GET", "/concurrency_limits/tag/{tag}", D),
    ("DELETE", "/concurrency_limits/tag/{tag}", D),
    ("POST", "/concurrency_limits/tag/{tag}/reset", D),
    ("GET", "/concurrency_limits/{id}", D),
    ("DELETE", "/concurrency_limits/{id}", D),
    ("GET", "/csrf-token", A),
    ("POST", "/deployments/", Need.DEPLOYMENT_CREATE),
    ("POST", "/deployments/bulk_delete", D),
    ("POST", "/deployments/count", R),
    ("POST", "/deployments/filter", R),
    ("POST", "/deployments/get_scheduled_flow_runs", D),
    ("GET", "/deployments/name/{flow_name}/{deployment_name}", Need.DEPLOYMENT_NAME_READ),
    ("POST", "/deployments/paginate", R),
    ("PATCH", "/deployments/{id}", Need.DEPLOYMENT_DEPLOY),
    ("GET", "/deployments/{id}", Need.DEPLOYMENT_READ),
    ("DELETE", "/deployments/{id}", Need.PREVIEW_DELETE),  # ACTION=cleanup-previews
    ("POST", "/deployments/{id}/create_flow_run", Need.DEPLOYMENT_RUN),
    ("POST", "/deployments/{id}/create_flow_run/bulk", Need.DEPLOYMENT_RUN),
    ("POST", "/deployments/{id}/pause_deployment", Need.DEPLOYMENT_DEPLOY),
    ("POST", "/deployments/{id}/resume_deployment", Need.DEPLOYMENT_DEPLOY),
    ("POST", "/deployments/{id}/schedule", Need.DEPLOYMENT_DEPLOY),
    ("GET", "/deployments/{id}/schedules", Need.DEPLOYMENT_READ),
    ("POST", "/deployments/{id}/schedules", Need.DEPLOYMENT_DEPLOY),
    ("PATCH", "/deployments/{id}/schedules/{schedule_id}", Need.DEPLOYMENT_DEPLOY),
    ("DELETE", "/deployments/{id}/schedules/{schedule_id}", Need.DEPLOYMENT_DEPLOY),
    ("GET", "/deployments/{id}/work_queue_check", Need.DEPLOYMENT_READ),
    ("POST", "/events", D),
    ("POST", "/events/count-by/{countable}", R),
    ("POST", "/events/filter", R),
    ("GET", "/events/filter/next", R),
    ("GET", "/flow_run_states/", R),
    ("GET", "/flow_run_states/{id}", R),
    ("POST", "/flow_runs/", D),
    ("POST", "/flow_runs/bulk_delete", D),
    ("POST", "/flow_runs/bulk_set_state", D),
    ("POST", "/flow_runs/count", R),
    ("POST", "/flow_runs/filter", R),
    ("POST", "/flow_runs/history", R),
    ("POST", "/flow_runs/lateness", R),
    ("POST", "/flow_runs/paginate", R),
    ("PATCH", "/flow_runs/{id}", D),
    ("GET", "/flow_runs/{id}", Need.FLOW_RUN_READ),
    ("DELETE", "/flow_runs/{id}", D),
    ("GET", "/flow_runs/{id}/graph", R),
    ("GET", "/flow_runs/{id}/graph-v2", R),
    ("POST", "/flow_runs/{id}/input", D),
    ("POST", "/flow_runs/{id}/input/filter", D),
    ("GET", "/flow_runs/{id}/input/{key}", D),
    ("DELETE", "/flow_runs/{id}/input/{key}", D),
    ("PATCH", "/flow_runs/{id}/labels", Need.FLOW_RUN_RUN),
    ("GET", "/flow_runs/{id}/logs/download", R),
    ("POST", "/flow_runs/{id}/resume", Need.FLOW_RUN_RUN),
    ("POST", "/flow_runs/{id}/set_state", Need.FLOW_RUN_RUN),
    ("POST", "/flows/", Need.FLOW_CREATE),
    ("POST", "/flows/bulk_delete", D),
    ("POST", "/flows/count", R),
    ("POST", "/flows/filter", R),
    ("GET", "/flows/name/{name}", Need.FLOW_NAME_READ),
    ("POST", "/flows/paginate", R),
    ("PATCH", "/flows/{id}", D),
    ("GET", "/flows/{id}", R),
    ("DELETE", "/flows/{id}", D),
    ("GET", "/health", A),
    ("GET", "/hello", A),
    ("POST", "/logs/", D),
    ("POST", "/logs/filter", R),
    ("GET", "/observed-states", R),
    ("GET", "/ready", A),
    ("PUT", "/saved_searches/", D),
    ("POST", "/saved_searches/filter", D),
    ("GET", "/saved_searches/{id}", D),
    ("DELETE", "/saved_searches/{id}", D),
    ("GET", "/task_run_states/", R),
    ("GET", "/task_run_states/{id}", R),
    ("POST", "/task_runs/", D),
    ("POST", "/task_runs/count", R),
    ("POST", "/task_runs/filter", R),
    ("POST", "/task_runs/history", R),
    ("POST", "/task_runs/paginate", R),
    ("PATCH", "/task_runs/{id}", D),
    ("GET", "/task_runs/{id}", R),
    ("DELETE", "/task_runs/{id}", D),
    ("POST", "/task_runs/{id}/set_state", D),
    ("POST", "/task_workers/filter", R),
    ("POST", "/templates/validate", D),
    ("POST", "/ui/flow_runs/count-task-runs", R),
    ("POST", "/ui/flow_runs/history", R),
    ("POST", "/ui/flows/count-deployments", R),
    ("POST", "/ui/flows/next-runs", R),
    ("POST", "/ui/schemas/validate", R),
    ("POST", "/ui/task_runs/count", R),
    ("POST", "/ui/task_runs/dashboard/counts", R),
    ("GET", "/ui/task_runs/{id}", R),
    ("POST", "/v2/concurrency_limits/", D),
    ("POST", "/v2/concurrency_limits/decrement", D),
    ("POST", "/v2/concurrency_limits/decrement-with-lease", D),
    ("POST", "/v2/concurrency_limits/filter", D),
    ("POST", "/v2/concurrency_limits/increment", D),
    ("POST", "/v2/concurrency_limits/increment-with-lease", D),
    ("POST", "/v2/concurrency_limits/leases/{lease_id}/renew", D),
    ("GET", "/v2/concurrency_limits/{id_or_name}", D),
    ("PATCH", "/v2/concurrency_limits/{id_or_name}", D),
    ("DELETE", "/v2/concurrency_limits/{id_or_name}", D),
    ("POST", "/variables/", D),
    ("POST", "/variables/count", D),
    ("POST", "/variables/filter", D),
    ("GET", "/variables/name/{name}", D),
    ("PATCH", "/variables/name/{name}", D),
    ("DELETE", "/variables/name/{name}", D),
    ("GET", "/variables/{id}", D),
    ("PATCH", "/variables/{id}", D),
    ("DELETE", "/variables/{id}", D),
    ("GET", "/version", A),
    ("POST", "/work_pools/", D),
    ("POST", "/work_pools/count", R),
    ("POST", "/work_pools/filter", R),
    ("GET", "/work_pools/{name}", Need.POOL_READ),
    ("PATCH", "/work_pools/{name}", D),
    ("DELETE", "/work_pools/{name}", D),
    ("POST", "/work_pools/{name}/concurrency_status", R),
    ("POST", "/work_pools/{name}/get_scheduled_flow_runs", D),
    ("POST", "/work_pools/{work_pool_name}/queues", D),
    ("POST", "/work_pools/{work_pool_name}/queues/filter", R),
    ("GET", "/work_pools/{work_pool_name}/queues/{name}", R),
    ("PATCH", "/work_pools/{work_pool_name}/queues/{name}", D),
    ("DELETE", "/work_pools/{work_pool_name}/queues/{name}", D),
    ("POST", "/work_pools/{work_pool_name}/workers/filter", Need.POOL_READ),
    ("POST", "/work_pools/{work_pool_name}/workers/heartbeat", D),
    ("DELETE", "/work_pools/{work_pool_name}/workers/{name}", D),
    ("POST", "/work_queues/", D),
    ("POST", "/work_queues/filter", R),
    ("GET", "/work_queues/name/{name}", R),
    ("PATCH", "/work_queues/{id}", D),
    ("GET", "/work_queues/{id}", R),
    ("DELETE", "/work_queues/{id}", D),
    ("POST", "/work_queues/{id}/concurrency_status", R),
    ("POST", "/work_queues/{id}/get_runs", D),
    ("GET", "/work_queues/{id}/status", R),
    # Websockets (authenticated by their first message).
    (WS, "/events/in", D),
    (WS, "/events/out", R),
    (WS, "/logs/out", R),
    (WS, "/task_runs/subscriptions/scheduled", D),
    (WS, "/work_pools/{work_pool_name}/workers/connect", D),
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    need: Need

    @property
    def parts(self) -> list[str]:
        return [p for p in self.path.split("/") if p]

    @property
    def static_count(self) -> int:
        return sum(1 for p in self.parts if not p.startswith("{"))


@dataclass(frozen=True)
class Match:
    endpoint: Endpoint
    params: dict[str, str]

    def forward_path(self) -> str:
        """The canonical path (Prefect's spelling) with this request's parameters, percent-encoded."""
        out = []
        for part in self.endpoint.parts:
            out.append(quote(self.params[part[1:-1]], safe="") if part.startswith("{") else part)
        return "/" + "/".join(out) + ("/" if self.endpoint.path.endswith("/") else "")


ENDPOINTS: tuple[Endpoint, ...] = tuple(sorted((Endpoint(m, p, n) for m, p, n in TABLE), key=lambda e: -e.static_count))


_BY_SHAPE: dict[tuple[str, int], list[Endpoint]] = {}
for _endpoint in ENDPOINTS:
    _BY_SHAPE.setdefault((_endpoint.method, len(_endpoint.parts)), []).append(_endpoint)
_PARTS = {endpoint: endpoint.parts for endpoint in ENDPOINTS}


def match(method: str, segments: list[str]) -> Match | None:
    """The endpoint for ``method`` (``WEBSOCKET`` for streams) and the API-relative segments.

    Static segments compare case-insensitively (the canonical spelling is forwarded); the most
    specific endpoint wins, as in Prefect's router where static routes are declared first.
    """
    for endpoint in _BY_SHAPE.get((method.upper(), len(segments)), ()):
        parts = _PARTS[endpoint]
        params: dict[str, str] = {}
        for pattern, segment in zip(parts, segments, strict=True):
            if pattern.startswith("{"):
                params[pattern[1:-1]] = segment
            elif pattern.lower() != segment.lower():
                break
        else:
            return Match(endpoint, params)
    return None
