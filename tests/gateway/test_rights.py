"""The endpoint → right table: it covers every route of the installed Prefect server, and each row
decides as its right says (one test per row). Path normalisation is tested here too."""

from __future__ import annotations

import asyncio
import functools
import re
from pathlib import Path

import pytest

from gateway import paths, rights
from gateway.authorize import Names, decide
from gateway.policy import Grant
from gateway.proxy import Upstream
from gateway.rights import TABLE, Need

READ_ONLY = Grant(rules=("reader",), read=True)
EVERYTHING_BUT_READ = Grant(rules=("runner",), read=False, run=("*",), deploy=("*",))
NOTHING_MATCHING = Grant(rules=("other",), read=False, run=("other/*",), deploy=("other/*",))
# need → (allowed with read only, allowed with run+deploy of everything but no read)
EXPECTED = {
    Need.DENY: (False, False),
    Need.ANY: (True, True),
    Need.READ: (True, False),
    Need.DEPLOYMENT_READ: (True, True),
    Need.DEPLOYMENT_NAME_READ: (True, True),
    Need.DEPLOYMENT_RUN: (False, True),
    Need.DEPLOYMENT_DEPLOY: (False, True),
    Need.PREVIEW_DELETE: (False, True),
    Need.DEPLOYMENT_OWNED_DELETE: (False, True),
    Need.DEPLOYMENT_CREATE: (False, True),
    Need.FLOW_CREATE: (False, True),
    Need.FLOW_NAME_READ: (True, True),
    Need.FLOW_RUN_READ: (True, True),
    Need.FLOW_RUN_RUN: (False, True),
    Need.POOL_READ: (True, True),
}
SAMPLES = {"resource_id": "prefect.deployment.dep-1", "flow_name": "etl", "deployment_name": "x", "name": "etl"}


def installed_routes() -> set[tuple[str, str]]:
    """(method, path) of every HTTP route and websocket of the installed Prefect server's API."""
    from prefect.server.api.server import create_api_app

    spec = create_api_app().openapi()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    import prefect.server.api as api

    for module in Path(api.__file__).parent.glob("*.py"):
        text = module.read_text()
        prefix = re.search(r"PrefectRouter\(\s*prefix=\"([^\"]*)\"", text)
        for socket in re.findall(r"@router\.websocket\(\"([^\"]+)\"\)", text):
            routes.add((rights.WS, (prefix.group(1) if prefix else "") + socket))
    return routes


def test_the_table_covers_every_route_of_the_installed_prefect_server_and_nothing_else() -> None:
    table = {(method, path) for method, path, _ in TABLE}
    installed = installed_routes()
    assert not installed - table, f"routes with no right (add them to gateway/rights.py): {sorted(installed - table)}"
    assert not table - installed, f"rows for routes Prefect does not have: {sorted(table - installed)}"
    assert len(table) == len(TABLE), "a route is listed twice"


def concrete(path: str) -> list[str]:
    return [SAMPLES.get(p[1:-1], "dep-1") if p.startswith("{") else p for p in path.split("/") if p]


@functools.cache
def names() -> Names:
    """Names already known (nothing is read from a server: a miss would fail on the closed port)."""
    known = Names(Upstream("http://127.0.0.1:9/api", "unused:unused"))
    known._deployments["dep-1"] = "etl/x"
    known._flows["flow-1"] = "etl"
    known._runs["dep-1"] = "dep-1"
    known._previews["dep-1"] = True
    return known


@pytest.mark.parametrize(("method", "path", "need"), TABLE, ids=[f"{m} {p}" for m, p, _ in TABLE])
def test_row(method: str, path: str, need: Need) -> None:
    match = rights.match(method, concrete(path))
    assert match is not None and match.endpoint.path == path and match.endpoint.need is need
    body = b'{"name": "x", "flow_id": "flow-1"}' if need is Need.DEPLOYMENT_CREATE else b'{"name": "etl"}'
    read_only, everything_but_read = EXPECTED[need]
    assert asyncio.run(decide(match, READ_ONLY, body, names())).allowed is read_only
    assert asyncio.run(decide(match, EVERYTHING_BUT_READ, body, names())).allowed is everything_but_read
    outsider = asyncio.run(decide(match, NOTHING_MATCHING, body, names()))
    assert outsider.allowed is (need is Need.ANY or need is Need.POOL_READ)
    if not outsider.allowed:
        assert outsider.missing


def test_deny_names_the_missing_right() -> None:
    match = rights.match("POST", ["deployments", "dep-1", "create_flow_run"])
    assert match is not None
    decision = asyncio.run(decide(match, READ_ONLY, b"", names()))
    assert not decision.allowed and decision.missing == "run: etl/x" and decision.deployment == "etl/x"


def test_only_a_deployments_own_automations_can_be_cleared() -> None:
    match = rights.match("DELETE", ["automations", "owned-by", "prefect.work-pool.p"])
    assert match is not None
    assert not asyncio.run(decide(match, EVERYTHING_BUT_READ, b"", names())).allowed


def test_forwarded_path_is_the_canonical_spelling() -> None:
    match = rights.match("POST", ["Flows"])
    assert match is not None and match.forward_path() == "/flows/"
    match = rights.match("GET", ["DEPLOYMENTS", "Name", "My Flow", "dep"])
    assert match is not None and match.forward_path() == "/deployments/name/My%20Flow/dep"


@pytest.mark.parametrize(
    "raw",
    [
        b"/api/deployments/%2e%2e/variables/filter",
        b"/api/deployments/../variables/filter",
        b"/api/./variables/filter",
        b"/api//variables/filter",
        b"/api/variables%2Ffilter",
        b"/api/variables%2ffilter",
        b"/api/variables%5cfilter",
        b"/api/variables\\filter",
        b"/api/variables/%252e%252e/filter",
        b"/api/flows/%00",
        b"/api/flows/%ff",
        b"api/flows",
    ],
)
def test_paths_that_could_mean_two_things_are_refused(raw: bytes) -> None:
    with pytest.raises(paths.PathRefused):
        paths.segments(raw)


def test_trailing_slash_and_case_are_not_significant() -> None:
    assert paths.segments(b"/api/Flows/filter/") == ["api", "Flows", "filter"]
    assert paths.segments(b"/api/deployments/name/my%20flow/x") == ["api", "deployments", "name", "my flow", "x"]
    assert paths.override_header(["Content-Type", "X-HTTP-Method-Override"]) == "x-http-method-override"


def test_a_deploy_right_deletes_previews_only() -> None:
    """ACTION=cleanup-previews deletes deployments tagged 'preview'; a deploy right does not reach any other."""
    known = Names(Upstream("http://127.0.0.1:9/api", "unused:unused"))
    known._deployments.update({"prod-1": "etl/daily", "pr-1": "etl/daily-pr-7"})
    known._previews.update({"prod-1": False, "pr-1": True})
    deployer = Grant(rules=("deployer",), read=False, deploy=("etl/*",))
    for deployment_id, allowed in (("pr-1", True), ("prod-1", False)):
        match = rights.match("DELETE", ["deployments", deployment_id])
        assert match is not None
        decision = asyncio.run(decide(match, deployer, b"", known))
        assert decision.allowed is allowed
        if not allowed:
            assert decision.missing == "deploy: etl/daily, of a deployment tagged 'preview'"
