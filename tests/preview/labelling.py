"""The one way to label a deployment (the create call's upsert) must leave every other field as it was,
on every server the pipe supports: checked against the session's server and the old ones."""

from __future__ import annotations

import asyncio
import os

from tests.compat.servers import api
from tests.support.prefect_server import PrefectServer


def assert_labelling_changes_nothing_else(server: PrefectServer) -> None:
    """A deployment with every field a deploy sets, labelled through PrefectApi: only its labels (and
    ``updated``) change (Prefect 3.9 resets ``parameters`` unless they are sent)."""
    from pipe.credentials import Credential
    from pipe.prefect_api import PrefectApi
    from pipe.preview import deployments
    from pipe.secret import Secret

    flow = api(server, "POST", "/flows/", {"name": f"labelled-{os.urandom(3).hex()}"})
    fields = {
        "name": "everything-set",
        "flow_id": flow["id"],
        "version": "v1",
        "description": "a deployment with every field a deploy sets",
        "tags": ["preview", "pr:9"],
        "parameters": {"n": 3},
        "parameter_openapi_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "enforce_parameter_schema": True,
        "pull_steps": [{"prefect.deployments.steps.git_clone": {"repository": "/x", "commit_sha": "abc1234"}}],
        "work_pool_name": server.pool,
        "work_queue_name": "default",
        "job_variables": {"env": {"STAGE": "staging"}},
        "entrypoint": "flows/etl.py:etl",
        "path": "/opt/flows",
        "concurrency_limit": 1,
    }
    created = api(server, "POST", "/deployments/", fields)
    before = api(server, "GET", f"/deployments/{created['id']}")

    async def label() -> None:
        credential = Credential(kind="auth_string", value=Secret(server.auth_string), source="the test")
        async with PrefectApi(server.api_url, credential) as prefect:
            deployment = await deployments.find_deployment_by_id(prefect, created["id"])
            assert deployment is not None
            await deployments.label_deployment(prefect, deployment, {"bitbucket.repository": "acme/repo"})

    asyncio.run(label())
    after = api(server, "GET", f"/deployments/{created['id']}")
    assert after["labels"]["bitbucket.repository"] == "acme/repo"
    # status and last_polled change when a worker of the pool polls: not the label call's doing.
    moving = ("labels", "updated", "status", "last_polled")
    changed = {key for key in before if key not in moving and before[key] != after.get(key)}
    assert not changed, {key: (before[key], after.get(key)) for key in changed}
