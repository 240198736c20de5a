"""What a run's ending means on Bitbucket: one verdict that the status and the report both use."""

from __future__ import annotations

from dataclasses import dataclass

from pipe.durations import format_duration
from pipe.outcome import RunResult

_CANCELLED = ("CANCELLED", "CANCELLING")


@dataclass(frozen=True)
class Verdict:
    status_state: str  # INPROGRESS | SUCCESSFUL | FAILED | STOPPED
    report_result: str  # PENDING | PASSED | FAILED
    phrase: str  # completes "Flow run X ..." — e.g. "completed in 12s"
    failed: bool = False  # the run itself failed: its error message and failing task are worth showing


STARTED = Verdict("INPROGRESS", "PENDING", "was created; the pipe is waiting for it to finish")
# WAIT=false: the step's work (creating the run) is done and nothing will update the report later, so
# neither stays pending; both say the run was not awaited.
NOT_AWAITED = Verdict("SUCCESSFUL", "PASSED", "was created and not awaited (WAIT=false); see the run in Prefect")


def judge(result: RunResult) -> Verdict:
    took = format_duration(result.duration_seconds)
    after = f" after {took}" if took else ""
    if result.succeeded:
        return Verdict("SUCCESSFUL", "PASSED", f"completed in {took}" if took else "completed")
    if result.stopped:
        what = "was cancelled" if result.cancel_requested else "was left running in Prefect"
        return Verdict("STOPPED", "FAILED", f"{what}: the step was stopped{after}")
    if result.timed_out:
        what = "cancellation requested" if result.cancel_requested else "still running in Prefect"
        return Verdict("STOPPED", "FAILED", f"did not finish within TIMEOUT{after} ({what})")
    if result.state_type in _CANCELLED:
        return Verdict("STOPPED", "FAILED", f"was cancelled{after}")
    if result.final:
        word = {"FAILED": "failed", "CRASHED": "crashed"}.get(result.state_type, result.state_type.lower())
        if result.state_name and result.state_name.lower() != word:
            word = f"{word} ({result.state_name})"
        return Verdict("FAILED", "FAILED", f"{word}{after}", failed=True)
    # The pipe stopped following a run that has not finished (WAIT=false): it is still in progress.
    return Verdict("INPROGRESS", "PENDING", f"is {result.state_name or result.state_type} (not waited for)")
