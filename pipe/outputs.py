"""Outputs for later steps: the toolkit's SharedData and Bitbucket's output variables.

Bitbucket reads the output variables file (``NAME=value`` lines) when the step ends, and a later step
sees only the names its ``output-variables`` declare. Each name is written once, with its latest value:
the file is rewritten without the pipe's earlier lines (a user's own lines stay). One run gives
``PREFECT_FLOW_RUN_ID``, ``_URL`` and ``_STATE``; several (DEPLOYMENTS) give the same per run, numbered
in the order of DEPLOYMENTS (``PREFECT_FLOW_RUN_1_ID``, …); always ``PREFECT_FLOW_RUNS``, every run as
one line of JSON, and ``PREFECT_FLOW_RUN_COUNT``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipe import console
from pipe.config import OutputSettings
from pipe.outcome import RunInfo, RunResult

SHARED_KEY = "prefect_flow_runs"
PREFIX = "PREFECT_FLOW_RUN"


def entry(run: RunInfo, state: str) -> dict[str, Any]:
    return {
        "deployment": run.deployment_name,
        "deployment_id": run.deployment_id,
        "flow_run_id": run.flow_run_id,
        "flow_run_name": run.flow_run_name,
        "flow_run_url": run.flow_run_url,
        "state": state,
    }


def state_of(result: RunResult | None) -> str:
    """``SCHEDULED`` right after creation, then the final state type (``TIMED_OUT`` past TIMEOUT)."""
    if result is None:
        return "SCHEDULED"
    return "TIMED_OUT" if result.timed_out else result.state_type


def variables(records: list[dict[str, Any]]) -> dict[str, str]:
    """The output variables for these runs, one value per name."""
    values: dict[str, str] = {}
    for number, record in enumerate(records, start=1):
        name = PREFIX if len(records) == 1 else f"{PREFIX}_{number}"
        values[f"{name}_ID"] = record["flow_run_id"]
        values[f"{name}_URL"] = record["flow_run_url"]
        values[f"{name}_STATE"] = record["state"]
    values[f"{PREFIX}_COUNT"] = str(len(records))
    values[f"{PREFIX}S"] = json.dumps(records, separators=(",", ":"), ensure_ascii=True)
    return values


def write(settings: OutputSettings, runs: list[tuple[RunInfo, RunResult | None]]) -> None:
    """Record the step's runs for later steps; a step that cannot write outputs still reports its runs."""
    records = [entry(run, state_of(result)) for run, result in runs]
    for where, write_to in ((settings.shared_dir, _share), (settings.variables_path, _rewrite)):
        if where:
            try:
                write_to(where, records)
            except (OSError, ValueError) as exc:
                console.warning(f"Could not write the step outputs: {exc}")


def _share(shared_dir: str, records: list[dict[str, Any]]) -> None:
    from bitbucket_pipes_toolkit import SharedData

    shared = SharedData(shared_dir)
    ids = {record["flow_run_id"] for record in records}
    kept = [r for r in (shared.get_variable(SHARED_KEY) or []) if r.get("flow_run_id") not in ids]
    shared.set_variable(SHARED_KEY, [*kept, *records])


def _rewrite(where: str, records: list[dict[str, Any]]) -> None:
    """The file without the pipe's earlier lines, then the current ones."""
    path = Path(where)
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name = line.partition("=")[0].strip()
            if not (name == f"{PREFIX}S" or name.startswith(f"{PREFIX}_")):
                kept.append(line)
    lines = [*kept, *(f"{name}={value}" for name, value in variables(records).items())]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
