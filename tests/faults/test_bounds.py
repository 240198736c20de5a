"""The bounds on waiting, in-process and fast: a server that accepts connections and never answers
(the fault proxy in its dead mode; no Prefect server needed) must cost one call's budget, and a wait
must end DEADLINE_GRACE after its deadline."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from pipe import prefect_api, waiter
from pipe.config import DeploymentRef
from pipe.credentials import Credential
from pipe.errors import PrefectError
from tests.faults.proxy import Fault, FaultProxy, Schedule

NO_CREDENTIAL = Credential("none", None, "none")
UNUSED_PORT = 9  # a dead proxy never connects upstream


def test_a_silent_server_costs_one_call_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """PrefectApi gives up on a call after CALL_BUDGET_SECONDS whatever the client's retries would
    do (5 attempts x the request timeout + backoff, about 3 minutes as shipped)."""
    monkeypatch.setattr(prefect_api, "CALL_BUDGET_SECONDS", 2.0)

    async def read() -> None:
        async with prefect_api.PrefectApi(proxy.api_url, NO_CREDENTIAL) as api:
            await api.read_deployment(DeploymentRef("greet/ci"))

    with FaultProxy(UNUSED_PORT, Schedule(seed=0, dead_from_start=True), lifetime=30) as proxy:
        started = time.monotonic()
        with pytest.raises(PrefectError, match="did not answer within 2s"):
            asyncio.run(read())
        took = time.monotonic() - started
    assert took < 2.0 + 2.0, took
    assert proxy.stats.faults[Fault.STALL] >= 1


def test_the_waiter_gives_up_at_the_deadline() -> None:
    """A read in flight at the deadline gets DEADLINE_GRACE, then the waiter stops (in-process)."""

    async def wait() -> None:
        async with prefect_api.PrefectApi(proxy.api_url, NO_CREDENTIAL) as api:
            await waiter.Waiter(api, [uuid.uuid4()], time.monotonic() + 1.0).wait()

    with FaultProxy(UNUSED_PORT, Schedule(seed=0, dead_from_start=True), lifetime=60) as proxy:
        started = time.monotonic()
        with pytest.raises(PrefectError, match="did not answer before TIMEOUT passed"):
            asyncio.run(wait())
        took = time.monotonic() - started
    assert took < 1.0 + waiter.DEADLINE_GRACE + 2.0, took
