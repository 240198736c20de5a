"""Outputs for later steps: the toolkit's SharedData and Bitbucket's output variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bitbucket_pipes_toolkit import SharedData

from pipe import console
from pipe.outcome import RunInfo, RunResult

SHARED_KEY = "prefect_flow_runs"


def entry(run: RunInfo, state: str) -> dict[str, Any]:
    return {
        "deployment": run.deployment_name,
        "deployment_id": run.deployment_id,
        "flow_run_id": run.flow_run_id,
        "flow_run_name": run.flow_run_name,
        "flow_run_url": run.flow_run_url,
        "state": state,
    }


def write(env: Mapping[str, str], run: RunInfo, result: RunResult | None) -> None:
    """Record the run for later steps; a step that cannot write outputs still reports its run."""
    state = "TIMED_OUT" if result and result.timed_out else (result.state_type if result else "SCHEDULED")
    record = entry(run, state)
    shared_dir = env.get("BITBUCKET_PIPE_SHARED_STORAGE_DIR")
    try:
        if shared_dir:
            shared = SharedData(shared_dir)
            runs = [r for r in (shared.get_variable(SHARED_KEY) or []) if r.get("flow_run_id") != run.flow_run_id]
            shared.set_variable(SHARED_KEY, [*runs, record])
        variables_path = env.get("BITBUCKET_PIPELINES_VARIABLES_PATH")
        if variables_path:
            with open(variables_path, "a", encoding="utf-8") as out:
                out.write(f"PREFECT_FLOW_RUN_ID={run.flow_run_id}\n")
                out.write(f"PREFECT_FLOW_RUN_URL={run.flow_run_url}\n")
                out.write(f"PREFECT_FLOW_RUN_STATE={state}\n")
    except (OSError, ValueError) as exc:
        console.warning(f"Could not write the step outputs: {exc}")
