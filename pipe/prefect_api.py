"""Prefect: everything the pipe asks of the Prefect API, through Prefect's own client.

The credential is handed to Prefect's settings in memory for the duration of the ``async with``
(never through ``os.environ``), so the HTTP client, the events stream and the logs stream all use
it. Errors become one :class:`PrefectError` line naming the server, the cause and the fix.

The first call reads the server's version first (``/api/admin/version``; Prefect Cloud has none) and
refuses a server older than :mod:`pipe.prefect_compat` supports. Requests carry only the fields the pipe
set, so servers older than the client take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from pipe import console
from pipe.config import DeploymentRef
from pipe.credentials import Credential
from pipe.errors import DeploymentNotFound, PrefectError
from pipe.prefect_compat import (
    ServerVersion,
    accepts_labels,
    check_supported,
    filter_body,
    parse_version,
)
from pipe.prefect_errors import status_code, translated
from pipe.urls import CLOUD_API_PREFIX, is_cloud

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun, Log, TaskRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

T = TypeVar("T")

REQUEST_TIMEOUT_SECONDS = 20.0  # one attempt
MAX_RETRIES = 4  # Prefect's client retries 408/429/502/503 and connection errors with backoff (2, 4, 8, 16 s)
# One call, its retries included. Without it a server that accepts connections and never answers
# holds each call for 5 attempts x the request timeout + 30 s of backoff (about 3 minutes).
CALL_BUDGET_SECONDS = 60.0
# Before the first answer Prefect's client does not retry a failed connect, and after its 5 attempts
# (three resets and two 503s at the start once ended a step within seconds) it gives up: the first
# contact tries again after this pause, for the rest of the first call's budget.
FIRST_CONTACT_PAUSE_SECONDS = 1.0
RETRIED_STATUS = (408, 429, 500, 502, 503, 504)
LOGS_PAGE = TASK_RUNS_PAGE = PAGE = 200  # the server's maximum


def flow_run_ui_url(api_url: str, ui_url: str | None, flow_run_id: str) -> str:
    """The flow run's page: Cloud's app URL, PREFECT_UI_URL, or the API URL without ``/api``."""
    return f"{ui_base_url(api_url, ui_url)}/runs/flow-run/{flow_run_id}"


def ui_base_url(api_url: str, ui_url: str | None) -> str:
    """Where the UI's pages are: Cloud's app URL, PREFECT_UI_URL, or the API URL without ``/api``."""
    if ui_url:
        base = ui_url.rstrip("/")
    elif is_cloud(api_url):
        base = api_url.replace(CLOUD_API_PREFIX, "https://app.prefect.cloud", 1)
        base = base.replace("/accounts/", "/account/", 1).replace("/workspaces/", "/workspace/", 1)
    else:
        base = api_url.rstrip("/")
        base = base[: -len("/api")] if base.endswith("/api") else base
    return base


class PrefectApi:
    """A session with one Prefect API (``async with PrefectApi(...) as api``)."""

    def __init__(self, api_url: str, credential: Credential, ui_url: str | None = None) -> None:
        self.api_url = api_url
        self.ui_url = ui_url
        self.credential = credential
        self.requests = 0  # HTTP requests sent through the client (for the summary and the benchmark)
        self.server_version: ServerVersion | None = None  # None on Prefect Cloud or when the server hides it
        self._stack = contextlib.AsyncExitStack()
        self._client: PrefectClient | None = None
        self._contacted = False
        self._contact_lock = asyncio.Lock()
        self._busy_answer: Exception | None = None  # the first contact's last retried answer (503, ...)

    @property
    def host(self) -> str:
        return urlsplit(self.api_url).netloc

    @property
    def client(self) -> PrefectClient:
        assert self._client is not None, "use PrefectApi in 'async with'"
        return self._client

    def settings(self) -> dict[Any, Any]:
        import prefect.settings as ps

        key = self.credential.value.reveal() if self.credential.value else None
        return {
            ps.PREFECT_API_URL: self.api_url,
            ps.PREFECT_API_KEY: key if self.credential.kind == "api_key" else None,
            ps.PREFECT_API_AUTH_STRING: key if self.credential.kind == "auth_string" else None,
            ps.PREFECT_CLIENT_MAX_RETRIES: MAX_RETRIES,
            ps.PREFECT_API_REQUEST_TIMEOUT: REQUEST_TIMEOUT_SECONDS,
            ps.PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED: False,
            # TLS verification is the pipe's, whatever the step's settings say (the streams read this one).
            ps.PREFECT_API_TLS_INSECURE_SKIP_VERIFY: False,
            **({ps.PREFECT_UI_URL: self.ui_url} if self.ui_url else {}),
            **self._stream_identity(key),
        }

    def _stream_identity(self, key: str | None) -> dict[Any, Any]:
        """Prefect's stream clients send no token in their first message when they hold an API key and the
        server is not Prefect Cloud; a server (or the pipe's gateway) in front of which the key is a bearer
        token then cannot tell who streams. The key goes into the handshake's headers too."""
        import prefect.settings as ps

        if self.credential.kind != "api_key" or not key or is_cloud(self.api_url):
            return {}
        return {ps.PREFECT_CLIENT_CUSTOM_HEADERS: {"Authorization": f"Bearer {key}"}}

    async def __aenter__(self) -> PrefectApi:
        import httpx
        from prefect.client.orchestration import PrefectClient
        from prefect.settings import temporary_settings

        self._stack.enter_context(temporary_settings(updates=self.settings()))
        key = self.credential.value.reveal() if self.credential.value else None

        async def count(_: httpx.Request) -> None:
            self.requests += 1

        async def show(response: httpx.Response) -> None:  # DEBUG=true: what a person debugging wants to see
            request = response.request
            console.debug(f"Prefect API: {request.method} {request.url.path} → {response.status_code}")

        try:
            with self.translate("preparing requests"):  # a credential HTTP headers cannot carry fails here
                client = PrefectClient(
                    self.api_url,
                    api_key=key if self.credential.kind == "api_key" else None,
                    auth_string=key if self.credential.kind == "auth_string" else None,
                    httpx_settings={
                        "timeout": httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=10.0),
                        "event_hooks": {"request": [count], "response": [show]},
                    },
                )
                self._client = await self._stack.enter_async_context(client)
        except BaseException:
            await self._stack.aclose()  # the settings go back in the context they were set in
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    # -- resolve ---------------------------------------------------------------------------------

    async def read_deployment(self, ref: DeploymentRef) -> DeploymentResponse:
        from prefect.exceptions import ObjectNotFound

        try:
            if ref.id is not None:
                return await self.call(f"reading deployment {ref.text!r}", self.client.read_deployment(ref.id))
            return await self.call(
                f"reading deployment {ref.text!r}", self.client.read_deployment_by_name(_path_name(ref))
            )
        except ObjectNotFound:
            hint = (
                "check the name with 'prefect deployment ls' (flow names use '-' where the function has '_')"
                if not ref.is_id
                else "check the id with 'prefect deployment ls'"
            )
            if is_cloud(self.api_url):
                hint += ", and that PREFECT_API_URL names the right workspace"
            raise DeploymentNotFound(
                f"DEPLOYMENT {ref.text!r} was not found on the Prefect API at {self.host}", hint
            ) from None

    async def deployment_label(self, deployment: DeploymentResponse) -> str:
        """``flow-name/deployment-name`` of a deployment found by id."""
        flow = await self.call("reading the deployment's flow", self.client.read_flow(deployment.flow_id))
        return f"{flow.name}/{deployment.name}"

    # -- trigger ---------------------------------------------------------------------------------

    async def create_flow_run(self, deployment_id: Any, **fields: Any) -> tuple[FlowRun, bool]:
        """Create a Scheduled run with these fields (``labels`` only where the server has them). The flag
        says whether it is new: a server answers 200, not 201, with the run an earlier request made
        under the same idempotency key."""
        from prefect.client.schemas.actions import DeploymentFlowRunCreate
        from prefect.client.schemas.objects import FlowRun
        from prefect.states import Scheduled, to_state_create

        await self.contact("creating the flow run")  # the server's version decides the fields
        if not accepts_labels(self.server_version):
            fields.pop("labels", None)  # the tags carry the same values
        create = DeploymentFlowRunCreate(state=to_state_create(Scheduled()), **fields)
        response = await self.call(
            "creating the flow run",
            self.client.request(
                "POST",
                "/deployments/{id}/create_flow_run",
                path_params={"id": deployment_id},
                json=create.model_dump(mode="json", exclude_unset=True),
            ),
        )
        return FlowRun.model_validate(response.json()), response.status_code == 201

    # -- deploy ------------------------------------------------------------------------------------

    async def read_work_pool(self, name: str) -> WorkPool | None:
        """The work pool of that name, or None when the server has none (404)."""
        from prefect.exceptions import ObjectNotFound

        try:
            # Prefect's client puts the name into the URL path as it is.
            return await self.call(f"reading work pool {name!r}", self.client.read_work_pool(_path_segment(name)))
        except ObjectNotFound:
            return None

    # -- wait --------------------------------------------------------------------------------------

    async def read_flow_runs(self, flow_run_ids: list[Any]) -> list[FlowRun]:
        """The runs with these ids, in one request (DEPLOYMENTS has at most 50 entries)."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.objects import FlowRun

        body = filter_body(flow_runs=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)), limit=len(flow_run_ids))
        response = await self.call(
            "reading the flow run" if len(flow_run_ids) == 1 else "reading the flow runs",
            self.client.request("POST", "/flow_runs/filter", json=body),
        )
        return FlowRun.model_validate_list(response.json())

    async def read_logs(self, flow_run_ids: list[Any], after: datetime | None, offset: int = 0) -> list[Log]:
        """One page of the runs' lines after ``after``, oldest first."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
        from prefect.client.schemas.objects import Log
        from prefect.client.schemas.sorting import LogSort

        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids))
        if after is not None:
            # Prefect types the field with its own datetime subclass; pydantic takes any aware datetime.
            log_filter.timestamp = LogFilterTimestamp(after_=after)  # type: ignore[arg-type]
        body = filter_body(logs=log_filter, limit=LOGS_PAGE, offset=offset, sort=LogSort.TIMESTAMP_ASC.value)
        response = await self.call(
            "reading the flow run's logs" if len(flow_run_ids) == 1 else "reading the flow runs' logs",
            self.client.request("POST", "/logs/filter", json=body),
        )
        return Log.model_validate_list(response.json())

    async def cancel(self, flow_run_id: Any, *, at_once: bool = False) -> str:
        """Ask the run to stop (``at_once``: a run no worker holds yet becomes Cancelled directly);
        returns the state type the server settled on."""
        from prefect.client.schemas.objects import State, StateType

        state_type = StateType.CANCELLED if at_once else StateType.CANCELLING
        result = await self.call(
            "cancelling the flow run",
            self.client.set_flow_run_state(
                flow_run_id, State(type=state_type, message="Cancelled by prefect-trigger"), force=False
            ),
        )
        state = getattr(result, "state", None)
        return str(state.type.value) if state is not None else str(result.status.value)

    async def failing_tasks(self, flow_run_ids: list[Any]) -> dict[Any, str]:
        """For each of these runs, the name of a failed or crashed task run (runs without one are left
        out): one request, and one more per run whose tasks a full page crowded out."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState
        from prefect.client.schemas.filters import TaskRunFilterStateType as StateTypeFilter
        from prefect.client.schemas.objects import StateType, TaskRun

        async def read(ids: list[Any], limit: int) -> list[TaskRun]:
            body = filter_body(
                flow_runs=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                task_runs=TaskRunFilter(
                    state=TaskRunFilterState(type=StateTypeFilter(any_=[StateType.FAILED, StateType.CRASHED]))
                ),
                limit=limit,
            )
            response = await self.call(
                "reading the failed task runs", self.client.request("POST", "/task_runs/filter", json=body)
            )
            return TaskRun.model_validate_list(response.json())

        names: dict[Any, str] = {}
        tasks = await read(flow_run_ids, TASK_RUNS_PAGE)
        for task in tasks:
            names.setdefault(task.flow_run_id, task.name)
        if len(tasks) == TASK_RUNS_PAGE:
            for flow_run_id in [id_ for id_ in flow_run_ids if id_ not in names]:
                names.update((task.flow_run_id, task.name) for task in await read([flow_run_id], 1))
        return names

    def flow_run_url(self, flow_run_id: Any) -> str:
        return flow_run_ui_url(self.api_url, self.ui_url, str(flow_run_id))

    def deployment_url(self, deployment_id: Any) -> str:
        return f"{ui_base_url(self.api_url, self.ui_url)}/deployments/deployment/{deployment_id}"

    # -- errors ------------------------------------------------------------------------------------

    async def call(self, doing: str, request: Awaitable[T]) -> T:
        """Await one API call (retries included) for at most CALL_BUDGET_SECONDS, errors translated.
        The first call contacts the server first, within the same budget."""
        with self.translate(doing):
            try:
                async with asyncio.timeout(CALL_BUDGET_SECONDS):
                    try:
                        await self._contact()
                    except BaseException:
                        if inspect.iscoroutine(request):
                            request.close()  # never sent
                        raise
                    return await request
            except TimeoutError:
                if self._busy_answer is not None:  # what the server kept answering says more than silence
                    raise self._busy_answer from None
                raise PrefectError(
                    f"the Prefect API at {self.host} did not answer within {CALL_BUDGET_SECONDS:.0f}s"
                    f" (retries included) while {doing}",
                    "check that the server is up and reachable from the build, then re-run the step",
                ) from None

    async def contact(self, doing: str) -> None:
        """Make the first contact now (when nothing was read yet), errors translated."""
        if not self._contacted:
            await self.call(doing, asyncio.sleep(0))

    async def _contact(self) -> None:
        """Once per session: read the server's version, say it, and refuse a server that is too old."""
        async with self._contact_lock:  # concurrent first calls wait for the one contact
            if self._contacted:
                return
            if not is_cloud(self.api_url):  # Cloud has no /admin/version and is always current
                self.server_version = await self._read_version()
                if self.server_version is not None:
                    console.info(f"Prefect server {self.server_version} at {self.host}")
                    check_supported(self.server_version, f"the Prefect API at {self.host}")
            self._contacted = True

    async def _read_version(self) -> ServerVersion | None:
        """The server's version, None where it is hidden (404). A server that is starting up or a
        flaky network gets tries until the call's budget runs out, as later calls do; nothing
        listening at all is said at once."""
        import httpx

        while True:
            try:
                response = await self.client.request("GET", "/admin/version")
                self._busy_answer = None
                body = response.json()
                return parse_version(body) if isinstance(body, str) else None
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code in (403, 404):  # a proxy in front that hides the admin routes
                    return None
                if exc.response.status_code not in RETRIED_STATUS:
                    raise
                self._busy_answer = exc
            except httpx.ConnectError:
                raise  # nothing listens there (a wrong URL)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
                self._busy_answer = None
            await asyncio.sleep(FIRST_CONTACT_PAUSE_SECONDS)

    @contextlib.contextmanager
    def translate(self, doing: str) -> Iterator[None]:
        """Turn client exceptions into one line for a person (:mod:`pipe.prefect_errors`)."""
        with translated(self, doing):
            yield

    # -- what the waiter tells of a run (added for the waiter's messages) -------------------------

    async def live_workers(self, pool: str) -> int | None:
        """How many workers of the work pool are online; None when the server has no such pool."""
        from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus

        body = filter_body(workers=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"])), limit=TASK_RUNS_PAGE)
        try:
            response = await self.call(
                f"reading the workers of work pool {pool!r}",
                self.client.request(
                    "POST",
                    "/work_pools/{work_pool_name}/workers/filter",
                    path_params={"work_pool_name": _path_segment(pool)},
                    json=body,
                ),
            )
        except PrefectError as exc:
            if status_code(exc) == 404:
                return None
            raise
        return len(response.json())

    async def task_run_names(self, task_run_ids: list[Any]) -> dict[Any, str]:
        """The names of these task runs (at most TASK_RUNS_PAGE), in one request."""
        from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterId
        from prefect.client.schemas.objects import TaskRun

        ids = task_run_ids[:TASK_RUNS_PAGE]
        body = filter_body(task_runs=TaskRunFilter(id=TaskRunFilterId(any_=ids)), limit=len(ids))
        response = await self.call(
            "reading the task runs' names", self.client.request("POST", "/task_runs/filter", json=body)
        )
        return {task.id: task.name for task in TaskRun.model_validate_list(response.json())}

    # -- what a deploy's prefect.yaml references (added for the deploy's checks) -------------------

    async def block_exists(self, block_type_slug: str, name: str) -> bool:
        """Whether the server has a block document of that type and name (``{{ prefect.blocks.<type>.<name> }}``)."""
        from prefect.exceptions import ObjectNotFound

        try:
            await self.call(
                f"reading block {block_type_slug}/{name}",
                self.client.read_block_document_by_name(
                    _path_segment(name), _path_segment(block_type_slug), include_secrets=False
                ),
            )
        except ObjectNotFound:
            return False
        return True

    async def variable_exists(self, name: str) -> bool:
        """Whether the server has a variable of that name (``{{ prefect.variables.<name> }}``)."""
        found = await self.call(f"reading variable {name!r}", self.client.read_variable_by_name(_path_segment(name)))
        return found is not None


def _path_name(ref: DeploymentRef) -> str:
    """``flow/deployment`` with each part percent-encoded for the URL path Prefect's client builds
    without encoding: otherwise ``greet/ci?x=1`` or ``greet/ci#x`` would read ``greet/ci``, and a
    part ``..`` would climb to another route."""
    flow, _, name = ref.text.partition("/")
    return "/".join(_path_segment(part) for part in (flow, name))


def _path_segment(text: str) -> str:
    """One part of a URL path, percent-encoded: ``/``, ``?``, ``#`` and ``..`` stay inside it."""
    return quote(text, safe="", errors="surrogateescape").replace(".", "%2E")
