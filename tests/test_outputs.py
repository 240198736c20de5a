"""Outputs for later steps: one value per name, the final one, and every run of a DEPLOYMENTS step."""

from __future__ import annotations

import json
from pathlib import Path

from pipe import outputs
from pipe.config import OutputSettings
from pipe.outcome import RunInfo, RunResult


def info(name: str) -> RunInfo:
    return RunInfo(name, f"dep-{name}", f"id-{name}", f"run-{name}", f"https://prefect.example.com/runs/{name}")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_each_name_is_written_once_with_its_final_value(tmp_path: Path) -> None:
    path = tmp_path / "variables"
    path.write_text("MY_OWN=kept\n")
    settings = OutputSettings(variables_path=str(path))
    run = info("etl/a")
    outputs.write(settings, [(run, None)])
    outputs.write(settings, [(run, RunResult(run=run, state_type="COMPLETED", state_name="Completed"))])

    written = lines(path)
    names = [line.partition("=")[0] for line in written]
    assert len(names) == len(set(names))
    assert written[0] == "MY_OWN=kept"
    assert "PREFECT_FLOW_RUN_STATE=COMPLETED" in written and "PREFECT_FLOW_RUN_ID=id-etl/a" in written
    assert "PREFECT_FLOW_RUN_COUNT=1" in written


def test_every_run_of_a_deployments_step_reaches_later_steps(tmp_path: Path) -> None:
    path = tmp_path / "variables"
    (tmp_path / "shared").mkdir()
    settings = OutputSettings(variables_path=str(path), shared_dir=str(tmp_path / "shared"))
    runs = [info("etl/a"), info("etl/b"), info("etl/c")]
    outputs.write(settings, [(run, None) for run in runs])
    failed = RunResult(run=runs[1], state_type="FAILED", state_name="Failed")
    outputs.write(settings, [(runs[0], None), (runs[1], failed), (runs[2], None)])

    values = dict(line.split("=", 1) for line in lines(path))
    assert values["PREFECT_FLOW_RUN_COUNT"] == "3"
    assert [values[f"PREFECT_FLOW_RUN_{n}_ID"] for n in (1, 2, 3)] == ["id-etl/a", "id-etl/b", "id-etl/c"]
    assert values["PREFECT_FLOW_RUN_2_STATE"] == "FAILED"
    assert "PREFECT_FLOW_RUN_ID" not in values  # one run's names would say which of three?
    listed = json.loads(values["PREFECT_FLOW_RUNS"])
    assert [(r["deployment"], r["state"]) for r in listed] == [
        ("etl/a", "SCHEDULED"),
        ("etl/b", "FAILED"),
        ("etl/c", "SCHEDULED"),
    ]
    assert len(lines(path)) == len(values)


def test_a_step_that_cannot_write_outputs_says_so_and_goes_on(tmp_path: Path) -> None:
    settings = OutputSettings(variables_path=str(tmp_path / "missing-dir" / "variables"))
    outputs.write(settings, [(info("etl/a"), None)])  # no exception: a warning line


def test_the_deployments_of_a_step_are_written_beside_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "variables"
    (tmp_path / "shared").mkdir()
    settings = OutputSettings(variables_path=str(path), shared_dir=str(tmp_path / "shared"))
    deployments = [
        outputs.deployment_entry(
            "etl/a", "dep-a", "https://prefect.example.com/deployments/deployment/dep-a", "0f3c1e2d"
        ),
        outputs.deployment_entry("etl/b", "dep-b", "https://prefect.example.com/deployments/deployment/dep-b", None),
    ]
    outputs.write_records(settings, outputs.DEPLOYMENTS, deployments)
    outputs.write(settings, [(info("etl/a"), None)])

    values = dict(line.split("=", 1) for line in lines(path))
    assert values["PREFECT_DEPLOYMENT_COUNT"] == "2" and values["PREFECT_FLOW_RUN_COUNT"] == "1"
    assert (values["PREFECT_DEPLOYMENT_1_NAME"], values["PREFECT_DEPLOYMENT_2_ID"]) == ("etl/a", "dep-b")
    assert values["PREFECT_DEPLOYMENT_1_VERSION"] == "0f3c1e2d" and values["PREFECT_DEPLOYMENT_2_VERSION"] == ""
    assert [d["deployment_id"] for d in json.loads(values["PREFECT_DEPLOYMENTS"])] == ["dep-a", "dep-b"]
    from bitbucket_pipes_toolkit import SharedData

    shared = SharedData(str(tmp_path / "shared"))
    assert [d["deployment"] for d in shared.get_variable("prefect_deployments")] == ["etl/a", "etl/b"]
    assert [r["flow_run_id"] for r in shared.get_variable("prefect_flow_runs")] == ["id-etl/a"]


def test_a_remote_value_cannot_add_a_variable_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "variables"
    settings = OutputSettings(variables_path=str(path))
    version = "v1\nPREFECT_API_URL=https://evil.example.com\r"
    outputs.write_records(settings, outputs.DEPLOYMENTS, [outputs.deployment_entry("etl/a", "dep-a", "u", version)])
    names = [line.partition("=")[0] for line in lines(path)]
    assert "PREFECT_API_URL" not in names and len(names) == len(set(names)) == 6, lines(path)
    assert json.loads(dict(line.split("=", 1) for line in lines(path))["PREFECT_DEPLOYMENTS"])[0]["version"] == version
