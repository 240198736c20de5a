"""Register the sample flows as deployments of a process work pool (used by tests and `make demo`).

Beside them, for the waiter's tests: ``chatty/ci`` (logs faster than the logs stream delivers),
``greet/bad-pull`` (a pull step that fails on the worker, so the run crashes before its flow), and
``greet/idle`` on a pool no worker serves (its runs are never taken)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow

HERE = Path(__file__).resolve().parent
SAMPLES = {"greet": "greet", "fail": "fail", "crash": "crash", "sleepy": "sleepy"}
MORE_SAMPLES = {"hardening.py:chatty": "chatty"}  # entrypoint: flow name
IDLE_POOL_SUFFIX = "-idle"  # the pool of greet/idle: no worker serves it


def main(pool: str) -> None:
    for entry, name in SAMPLES.items():
        deployment = flow.from_source(source=str(HERE), entrypoint=f"flows.py:{entry}")
        deployment.deploy(name="ci", work_pool_name=pool, print_next_steps=False, build=False, push=False)
        print(f"deployed {name}/ci", flush=True)
    for entrypoint, name in MORE_SAMPLES.items():
        sample: Any = flow.from_source(source=str(HERE), entrypoint=entrypoint)  # a Flow (sync context)
        sample.deploy(name="ci", work_pool_name=pool, print_next_steps=False, build=False, push=False)
        print(f"deployed {name}/ci", flush=True)
    deploy_unrunnable(pool)


def deploy_unrunnable(pool: str) -> None:
    """``greet/bad-pull``: its git_clone pull step fails on the worker. ``greet/idle``: on a pool
    (created here) that no worker serves. (The async client: older Prefects' sync one lacks these.)"""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    async def deploy() -> None:
        async with get_client() as client:
            flow_id = (await client.read_flow_by_name("greet")).id
            missing_repository = (HERE / "no-such-repository.git").as_uri()
            await client.create_deployment(
                flow_id=flow_id,
                name="bad-pull",
                work_pool_name=pool,
                entrypoint="flows.py:greet",
                pull_steps=[{"prefect.deployments.steps.git_clone": {"repository": missing_repository}}],
            )
            idle = pool + IDLE_POOL_SUFFIX
            await client.create_work_pool(WorkPoolCreate(name=idle, type="process"), overwrite=True)
            await client.create_deployment(
                flow_id=flow_id, name="idle", work_pool_name=idle, entrypoint="flows.py:greet", path=str(HERE)
            )

    asyncio.run(deploy())
    print("deployed greet/bad-pull and greet/idle", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pipe-tests")
