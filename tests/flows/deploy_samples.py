"""Register the sample flows as deployments of a process work pool (used by tests and `make demo`)."""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

HERE = Path(__file__).resolve().parent
SAMPLES = {"greet": "greet", "fail": "fail", "crash": "crash", "sleepy": "sleepy"}


def main(pool: str) -> None:
    for entry, name in SAMPLES.items():
        deployment = flow.from_source(source=str(HERE), entrypoint=f"flows.py:{entry}")
        deployment.deploy(name="ci", work_pool_name=pool, print_next_steps=False, build=False, push=False)
        print(f"deployed {name}/ci", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pipe-tests")
