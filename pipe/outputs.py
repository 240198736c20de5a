"""Outputs for later steps: the toolkit's SharedData and Bitbucket's output variables.

Bitbucket reads the output variables file (``NAME=value`` lines) when the step ends, and a later step
sees only the names its ``output-variables`` declare. Each name is written once, with its latest value:
the file is rewritten without the pipe's earlier lines of the same family (a user's own lines stay).

Two families, each numbered in the order of DEPLOYMENT/DEPLOYMENTS when there are several:

- the flow runs a step started: ``PREFECT_FLOW_RUN_ID``, ``_URL`` and ``_STATE`` (one run) or
  ``PREFECT_FLOW_RUN_1_ID``, … (several); always ``PREFECT_FLOW_RUNS`` (every run as one line of JSON)
  and ``PREFECT_FLOW_RUN_COUNT``; SharedData ``prefect_flow_runs``;
- the deployments a step deployed (deploy, deploy-and-run, preview): ``PREFECT_DEPLOYMENT_ID``,
  ``_NAME``, ``_URL`` and ``_VERSION`` likewise, ``PREFECT_DEPLOYMENTS`` and ``PREFECT_DEPLOYMENT_COUNT``;
  SharedData ``prefect_deployments``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe import console
from pipe.config import OutputSettings
from pipe.outcome import RunInfo, RunResult
from pipe.remote_text import one_line


@dataclass(frozen=True)
class Family:
    """One kind of record written for later steps."""

    prefix: str  # PREFECT_FLOW_RUN: PREFECT_FLOW_RUN_ID, PREFECT_FLOW_RUN_1_ID, PREFECT_FLOW_RUNS, ...
    shared_key: str  # the toolkit's SharedData key
    fields: tuple[tuple[str, str], ...]  # (variable suffix, record field); the first, ID, is the key

    @property
    def key(self) -> str:
        """The field that tells records apart (a later write replaces the record with the same key)."""
        return self.fields[0][1]


RUNS = Family(
    "PREFECT_FLOW_RUN",
    "prefect_flow_runs",
    (("ID", "flow_run_id"), ("URL", "flow_run_url"), ("STATE", "state")),
)
DEPLOYMENTS = Family(
    "PREFECT_DEPLOYMENT",
    "prefect_deployments",
    (("ID", "deployment_id"), ("NAME", "deployment"), ("URL", "deployment_url"), ("VERSION", "version")),
)


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


def deployment_entry(name: str, deployment_id: str, url: str, version: str | None) -> dict[str, Any]:
    return {"deployment": name, "deployment_id": deployment_id, "deployment_url": url, "version": version or ""}


def variables(records: list[dict[str, Any]], family: Family = RUNS) -> dict[str, str]:
    """The output variables for these records, one value per name."""
    values: dict[str, str] = {}
    for number, record in enumerate(records, start=1):
        name = family.prefix if len(records) == 1 else f"{family.prefix}_{number}"
        for suffix, field in family.fields:
            values[f"{name}_{suffix}"] = one_line(str(record[field]))  # a remote name: one line, one variable
    values[f"{family.prefix}_COUNT"] = str(len(records))
    values[f"{family.prefix}S"] = json.dumps(records, separators=(",", ":"), ensure_ascii=True)
    return values


def write(settings: OutputSettings, runs: list[tuple[RunInfo, RunResult | None]]) -> None:
    """Record the step's runs for later steps; a step that cannot write outputs still reports its runs."""
    write_records(settings, RUNS, [entry(run, state_of(result)) for run, result in runs])


def write_records(settings: OutputSettings, family: Family, records: list[dict[str, Any]]) -> None:
    for where, write_to in ((settings.shared_dir, _share), (settings.variables_path, _rewrite)):
        if where:
            try:
                write_to(where, family, records)
            except (OSError, ValueError) as exc:
                console.warning(f"Could not write the step outputs: {exc}")


def _share(shared_dir: str, family: Family, records: list[dict[str, Any]]) -> None:
    from bitbucket_pipes_toolkit import SharedData

    shared = SharedData(shared_dir)
    keys = {record[family.key] for record in records}
    kept = [r for r in (shared.get_variable(family.shared_key) or []) if r.get(family.key) not in keys]
    shared.set_variable(family.shared_key, [*kept, *records])


def _rewrite(where: str, family: Family, records: list[dict[str, Any]]) -> None:
    """The file without the family's earlier lines, then the current ones."""
    path = Path(where)
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name = line.partition("=")[0].strip()
            if not (name == f"{family.prefix}S" or name.startswith(f"{family.prefix}_")):
                kept.append(line)
    lines = [*kept, *(f"{name}={value}" for name, value in variables(records, family).items())]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
