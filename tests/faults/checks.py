"""What a run of the pipe under faults must show: its exit code, one run on the server, every flow
log line exactly once, one clear line on failure, no traceback, no secret."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.faults import leakscan
from tests.support.pipe import BITBUCKET_ENV, PipeResult
from tests.support.pipe import plain as plain  # checks.plain(), as the tests call it
from tests.support.pipe import step_uuid as step_uuid  # checks.step_uuid(), as the tests call it
from tests.support.prefect_server import PrefectInspector, sdk_client

RUN_ID = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")
FLOW_LINE = re.compile(r"prefect │ \d\d:\d\d:\d\d \S+\s+(?P<message>.*)$")

# The lines each sample flow logs (tests/flows/flows.py) that must each appear exactly once,
# the engine's closing lines included (the last ones reach the server after the final state).
EXPECTED_LINES = {
    "greet/ci": [
        "hello world #0",
        "hello world #1",
        f"commit_sha={BITBUCKET_ENV['BITBUCKET_COMMIT']} branch=main build_number=42",
        "bitbucket repository=acme/data-pipelines",
        "last line of greet",
        "Finished in state Completed()",
    ],
    "fail/ci": [
        "about to fail",
        "Task run failed with exception: RuntimeError('boom')",
        "Finished in state Failed('Task run encountered an exception RuntimeError: boom')",
        "Encountered exception during execution: RuntimeError('boom')",
        "Finished in state Failed('Flow run encountered an exception: RuntimeError: boom')",
        "Engine execution exited with unexpected exception",
    ],
    "sleepy/ci": [],  # its lines depend on its parameters: the tests that use it check them
}
EXPECTED_EXIT = {"greet/ci": 0, "fail/ci": 1, "sleepy/ci": 0}
FINAL_STATE = {"greet/ci": "COMPLETED", "fail/ci": "FAILED", "sleepy/ci": "COMPLETED"}


def flow_messages(output: str) -> list[str]:
    """The first line of every log record of the flow run the pipe printed."""
    out = []
    for line in plain(output).splitlines():
        match = FLOW_LINE.search(line)
        if match:
            out.append(match.group("message").rstrip())
    return out


def log_problems(output: str, expected: list[str]) -> list[str]:
    messages = flow_messages(output)
    problems = []
    for line in expected:
        count = messages.count(line)
        if count != 1:
            problems.append(f"{line!r} printed {count} times")
    return problems


STATE_LINE = re.compile(r"Flow run is (\w+) \(")
# How far along a run is by the state name the pipe announces (names the sample flows go through).
STATE_RANK = {"Scheduled": 0, "Late": 0, "Pending": 1, "Submitting": 1, "Running": 2}


def states_backwards(output: str) -> list[str]:
    """Announced states that go back (an old event replayed after a reconnect, shown as news)."""
    problems, highest = [], -1
    for name in STATE_LINE.findall(plain(output)):
        rank = STATE_RANK.get(name, 3)
        if rank < highest:
            problems.append(f"'Flow run is {name}' announced after a later state")
        highest = max(highest, rank)
    return problems


def run_ids(output: str) -> set[str]:
    return set(RUN_ID.findall(output))


def fail_lines(output: str) -> list[str]:
    return [line for line in plain(output).splitlines() if "✖" in line]


def own_tracebacks(output: str) -> list[str]:
    """Traceback lines outside the flow's own log lines (a failing flow logs its exception)."""
    return [line for line in plain(output).splitlines() if "Traceback" in line and "prefect │" not in line]


@dataclass
class Verdict:
    """Everything checked about one run of the pipe; ``problems`` is empty when it held up."""

    deployment: str
    result: PipeResult
    runs: list[Any]
    elapsed: float
    expect_runs: int = 1
    problems: list[str] = field(default_factory=list)


def judge(
    deployment: str,
    result: PipeResult,
    runs: list[Any],
    elapsed: float,
    expect_exit: int | None = None,
    expect_runs: int = 1,
) -> Verdict:
    """``runs``: the flow runs on the server carrying this step's unique tag."""
    verdict = Verdict(deployment, result, runs, elapsed, expect_runs)
    problems = verdict.problems
    want = EXPECTED_EXIT[deployment] if expect_exit is None else expect_exit
    if result.code != want:
        problems.append(f"exit {result.code}, expected {want}")
    if len(runs) != expect_runs:
        problems.append(f"{len(runs)} flow runs on the server for the step, expected {expect_runs}")
    ids = run_ids(result.output)
    if runs and ids != {str(runs[0].id)}:
        problems.append(f"the output names runs {sorted(ids)}, the server has {[str(r.id) for r in runs]}")
    if runs and want == EXPECTED_EXIT[deployment] and deployment in FINAL_STATE:
        state = runs[0].state.type.value if runs[0].state else None
        if state != FINAL_STATE[deployment]:
            problems.append(f"the run is {state} on the server, expected {FINAL_STATE[deployment]}")
        summary = re.search(r"^ State\s+(\S+)", plain(result.output), re.M)
        if not summary or summary.group(1).upper() != FINAL_STATE[deployment]:
            problems.append(f"the summary does not report {FINAL_STATE[deployment]}")
    problems += states_backwards(result.output)
    fails = fail_lines(result.output)
    if len(fails) != (1 if want else 0):
        problems.append(f"{len(fails)} ✖ lines, expected {1 if want else 0}")
    if want == EXPECTED_EXIT[deployment]:  # a run that ended as the flow does: its lines, each once
        problems += log_problems(result.output, EXPECTED_LINES[deployment])
    if own_tracebacks(result.output):
        problems.append("a traceback outside the flow's log lines")
    problems += leakscan.leaks(result.output)
    return verdict


def _client(prefect: PrefectInspector) -> Any:
    return sdk_client(prefect.server)


def runs_with_tag(prefect: PrefectInspector, tag: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with _client(prefect) as client:
        return list(client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))))


def count_runs(prefect: PrefectInspector) -> int:
    """All flow runs on the server (``count``, not a page that stops at 200)."""
    with _client(prefect) as client:
        return int(client.count_flow_runs())


def judge_fan_out(
    targets: dict[str, list[str]], result: PipeResult, runs: list[Any], elapsed: float, expect_exit: int
) -> Verdict:
    """DEPLOYMENTS under faults: one run per deployment, each run's lines exactly once under its own
    prefix, its states never announced backwards, its final state in the table."""
    verdict = Verdict("fan-out", result, runs, elapsed, expect_runs=len(targets))
    problems = verdict.problems
    if result.code != expect_exit:
        problems.append(f"exit {result.code}, expected {expect_exit}")
    if len(runs) != len(targets):
        problems.append(f"{len(runs)} flow runs on the server for the step, expected {len(targets)}")
    if run_ids(result.output) != {str(r.id) for r in runs}:
        problems.append(f"the output names runs {sorted(run_ids(result.output))}, the server has {len(runs)}")
    text = plain(result.output)
    for deployment, lines in targets.items():
        own = "\n".join(line for line in text.splitlines() if line.startswith(f"[{deployment}] "))
        problems += [f"{deployment}: {p}" for p in log_problems(own, lines) + states_backwards(own)]
        row = re.search(rf"^ {re.escape(deployment)}\s+(\S+)", text, re.M)
        if not row or row.group(1).upper() != FINAL_STATE[deployment]:
            problems.append(f"the table does not report {deployment} {FINAL_STATE[deployment]}")
    fails = fail_lines(result.output)
    if len(fails) != (1 if expect_exit else 0):
        problems.append(f"{len(fails)} ✖ lines, expected {1 if expect_exit else 0}")
    if own_tracebacks(result.output):
        problems.append("a traceback outside the flow's log lines")
    problems += leakscan.leaks(result.output)
    return verdict
