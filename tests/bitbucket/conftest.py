"""Fixtures of the Bitbucket reporter tests: the API stand-in, a build's variables, runs and results."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cerberus import Validator

from pipe.bitbucket.api import RetryPolicy
from pipe.bitbucket.variables import VARIABLES
from pipe.outcome import RunInfo, RunResult
from tests.bitbucket.standin import BitbucketStandIn

TOKEN = "bbat-test-T0ken-9f8e7d6c5b4a"
COMMIT = "0f3c1e2d4b5a69788796a5b4c3d2e1f00f1e2d3c"
# Bitbucket's default variables for a push to main (values shaped like the real ones).
BUILD_ENV = {
    "CI": "true",
    "BITBUCKET_COMMIT": COMMIT,
    "BITBUCKET_BRANCH": "main",
    "BITBUCKET_BUILD_NUMBER": "42",
    "BITBUCKET_WORKSPACE": "acme",
    "BITBUCKET_REPO_SLUG": "data-pipelines",
    "BITBUCKET_REPO_FULL_NAME": "acme/data-pipelines",
    "BITBUCKET_REPO_OWNER": "acme",
}
# Quick retries so the failure tests stay fast; one test keeps the real policy to show its bound.
FAST = RetryPolicy(attempts=3, backoff=0.01, connect_timeout=1.0, read_timeout=1.0, deadline=3.0)


def validated(**values: str) -> dict[str, Any]:
    """The reporter's variables as the pipe's schema validation leaves them (defaults filled in)."""
    document = {k: v if VARIABLES[k]["type"] == "string" else _yaml_bool(v) for k, v in values.items()}
    validator = Validator(VARIABLES)
    assert validator.validate(document), validator.errors
    return dict(validator.document)


def _yaml_bool(value: str) -> Any:
    return {"true": True, "false": False}.get(value.lower(), value)


def make_run(deployment: str = "greet/ci", **overrides: Any) -> RunInfo:
    run_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "deployment_name": deployment,
        "deployment_id": str(uuid.uuid4()),
        "flow_run_id": run_id,
        "flow_run_name": "crimson-fox",
        "flow_run_url": f"http://127.0.0.1:4200/runs/flow-run/{run_id}",
        "deployment_version": "3f2a9c1",
        "created": datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return RunInfo(**values)


def make_result(run: RunInfo, state: str = "COMPLETED", **overrides: Any) -> RunResult:
    names = {"COMPLETED": "Completed", "FAILED": "Failed", "CANCELLED": "Cancelled", "CRASHED": "Crashed"}
    values: dict[str, Any] = {
        "state_type": state,
        "state_name": names.get(state, state.title()),
        "duration_seconds": 12.3,
    }
    values.update(overrides)
    return RunResult(run=run, **values)


@pytest.fixture()
def standin() -> Iterator[BitbucketStandIn]:
    with BitbucketStandIn(expect_authorization=f"Bearer {TOKEN}") as server:
        yield server
