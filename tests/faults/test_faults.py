"""The pipe under faults: a seeded fault-injecting proxy between `python -m pipe` and the real Prefect
server (resets, drops mid-answer and mid-websocket, 429/502/503, lost answers, a dead server), a step
stopped with SIGTERM. Every run must end with the right exit code, exactly one flow run on the
server, and every line the flow logged printed exactly once.

The default suite runs a handful of seeds; ``make test-long`` runs the long tier (100 seeds for each
of a passing and a failing flow, and the slow dead-server cases).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pipe import prefect_api, run, waiter
from tests.faults import checks, leakscan
from tests.faults.checks import Verdict
from tests.faults.proxy import Fault, FaultProxy, Schedule
from tests.faults.tally import TALLY
from tests.support.pipe import BackgroundPipe, PipeResult, run_pipe
from tests.support.prefect_server import PrefectInspector, PrefectServer
from tests.support.proxy import Request

pytestmark = pytest.mark.prefect

RATE = 0.25  # chance of a fault per request and per new connection
WEBSOCKET_DROP_RATE = 0.5
DEFAULT_SEEDS = [(1, "greet/ci"), (2, "greet/ci"), (4, "fail/ci"), (5, "fail/ci")]
LONG_SEEDS = range(1000, 1100)
PIPE_TIMEOUT = 400.0  # the subprocess; far above any bound asserted here
STARTUP_SLACK = 15.0  # process start, imports, a slow shared machine


def random_faults(seed: int) -> Schedule:
    return Schedule(seed=seed, rate=RATE, websocket_drop_rate=WEBSOCKET_DROP_RATE)


def is_create(request: Request) -> bool:
    return request.method == "POST" and request.path.endswith("/create_flow_run")


def is_run_read(request: Request) -> bool:
    """The waiter's read of the runs' states (all runs of the step in one filter request)."""
    return request.method == "POST" and request.path.endswith("/flow_runs/filter")


@dataclass
class Faulted:
    verdict: Verdict
    proxy: FaultProxy
    ended: float  # seconds after the proxy started

    @property
    def result(self) -> PipeResult:
        return self.verdict.result

    def __str__(self) -> str:  # what pytest shows when an assertion fails
        return f"problems: {self.verdict.problems}\n{self.result}\n{self.proxy.describe()}"

    def event_time(self, text: str) -> float:
        return next(e.at for e in self.proxy.stats.events if text in e.what)


def run_faulted(
    step_env: dict[str, str],
    server: PrefectServer,
    prefect: PrefectInspector,
    schedule: Schedule,
    deployment: str = "greet/ci",
    expect_exit: int | None = None,
    expect_runs: int = 1,
    **extra: str,
) -> Faulted:
    env = {**step_env, "DEPLOYMENT": deployment, **extra}
    return _through_proxy(
        env,
        server,
        prefect,
        schedule,
        lambda result, runs, elapsed: checks.judge(
            deployment, result, runs, elapsed, expect_exit=expect_exit, expect_runs=expect_runs
        ),
    )


def _through_proxy(
    env: dict[str, str],
    server: PrefectServer,
    prefect: PrefectInspector,
    schedule: Schedule,
    judge: Callable[[PipeResult, list[Any], float], Verdict],
) -> Faulted:
    """Run the pipe through a fault proxy and judge it by the runs carrying the step's tag."""
    with FaultProxy(server.port, schedule) as proxy:
        env = {**env, "PREFECT_API_URL": proxy.api_url}
        started = time.monotonic()
        result = run_pipe(env, timeout=PIPE_TIMEOUT)
        elapsed = time.monotonic() - started
        ended = proxy.clock()
    verdict = judge(result, checks.runs_with_tag(prefect, env["TAGS_0"]), elapsed)
    TALLY.add(schedule.seed, verdict, proxy)
    return Faulted(verdict, proxy, ended)


def cancel_leftover(prefect: PrefectInspector, tag: str) -> None:
    """A run the test left running (the server was 'dead' for the pipe only) must not hold the worker."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    with checks._client(prefect) as client:
        for flow_run in checks.runs_with_tag(prefect, tag):
            if flow_run.state and not flow_run.state.is_final():
                client.set_flow_run_state(flow_run.id, State(type=StateType.CANCELLING), force=True)


# -- random seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "deployment"), DEFAULT_SEEDS, ids=[f"seed{s}-{d.split('/')[0]}" for s, d in DEFAULT_SEEDS]
)
def test_random_faults(
    seed: int, deployment: str, step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    faulted = run_faulted(step_env, prefect_server, prefect, random_faults(seed), deployment)
    assert faulted.proxy.stats.total_faults >= 2, str(faulted)  # the seed really injected faults
    assert not faulted.verdict.problems, str(faulted)


@pytest.mark.long
@pytest.mark.parametrize("deployment", ["greet/ci", "fail/ci"])
@pytest.mark.parametrize("seed", LONG_SEEDS)
def test_random_faults_long(
    seed: int, deployment: str, step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    faulted = run_faulted(step_env, prefect_server, prefect, random_faults(seed), deployment)
    assert not faulted.verdict.problems, str(faulted)


# -- many deployments at once ----------------------------------------------------------------------

FAN_OUT_SEEDS = [11, 12]
LONG_FAN_OUT_SEEDS = range(2000, 2020)
SLEEPY_LINES = 4
FAN_OUT = {
    "greet/ci": checks.EXPECTED_LINES["greet/ci"],
    "fail/ci": checks.EXPECTED_LINES["fail/ci"],
    "sleepy/ci": [f"tick {i}" for i in range(SLEEPY_LINES)] + ["last line of sleepy"],
}


def run_fan_out(step_env: dict[str, str], server: PrefectServer, prefect: PrefectInspector, seed: int) -> Faulted:
    """Three deployments in one step (one of them fails) on one shared events and logs subscription."""
    entries = [
        "greet/ci",
        "fail/ci",
        f'{{"deployment": "sleepy/ci", "parameters": {{"seconds": 4, "lines": {SLEEPY_LINES}}}}}',
    ]
    env = {k: v for k, v in step_env.items() if k != "DEPLOYMENT"}
    env |= {"DEPLOYMENTS_COUNT": str(len(entries)), **{f"DEPLOYMENTS_{i}": e for i, e in enumerate(entries)}}
    return _through_proxy(
        env,
        server,
        prefect,
        random_faults(seed),
        lambda result, runs, elapsed: checks.judge_fan_out(FAN_OUT, result, runs, elapsed, expect_exit=1),
    )


@pytest.mark.parametrize("seed", FAN_OUT_SEEDS)
def test_random_faults_fan_out(
    seed: int, step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    faulted = run_fan_out(step_env, prefect_server, prefect, seed)
    assert faulted.proxy.stats.total_faults >= 2, str(faulted)
    assert not faulted.verdict.problems, str(faulted)


@pytest.mark.long
@pytest.mark.parametrize("seed", LONG_FAN_OUT_SEEDS)
def test_random_faults_fan_out_long(
    seed: int, step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    faulted = run_fan_out(step_env, prefect_server, prefect, seed)
    assert not faulted.verdict.problems, str(faulted)


# -- targeted faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("times", [1, pytest.param(3, marks=pytest.mark.long)])
def test_lost_create_answer_still_one_run(
    times: int, step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    """The server creates the run, the answer never arrives, the client retries with the same
    idempotency key: the retry must return the run already created, not start another."""
    schedule = Schedule(seed=0, lose_answer=is_create, lose_answer_times=times)
    faulted = run_faulted(step_env, prefect_server, prefect, schedule)
    assert faulted.proxy.stats.faults[Fault.LOST_ANSWER] == times, str(faulted)
    creates = [e.what for e in faulted.proxy.stats.events if "create_flow_run" in e.what]
    assert sum("answer lost" in c for c in creates) == times, str(faulted)
    assert sum(": 201 " in c or "answered 201" in c for c in creates) == 1, str(faulted)  # created once
    assert ": 200 after" in creates[-1], str(faulted)  # the last retry found the run (200, not 201)
    assert not faulted.verdict.problems, str(faulted)


def _outage(
    mode: str, window: tuple[float, float], step_env: dict[str, str], server: PrefectServer, prefect: PrefectInspector
) -> None:
    lines = 45  # one a second: the run outlasts the 30 s the final read looks back
    schedule = Schedule(seed=0, websocket_outage=window, websocket_outage_mode=mode, websocket_outage_from=is_create)
    faulted = run_faulted(
        step_env,
        server,
        prefect,
        schedule,
        "sleepy/ci",
        expect_exit=0,
        PARAMETERS=f'{{"seconds": {lines}, "lines": {lines}}}',
    )
    output = faulted.result.output
    assert faulted.result.code == 0, str(faulted)
    assert faulted.proxy.stats.faults[Fault.DROP_MID_WEBSOCKET] >= 1, str(faulted)  # streams were cut
    # Lines did come by the logs websocket (a server that does not publish logs leaves it silent,
    # and then a stream fault would only ever test polling).
    assert faulted.proxy.stats.websocket_bytes["/api/logs/out"] > 1000, str(faulted)
    problems = checks.log_problems(output, [f"tick {i}" for i in range(lines)] + ["last line of sleepy"])
    assert not problems, f"{problems}\n{faulted}"
    assert not faulted.verdict.problems, str(faulted)


def test_websockets_down_for_seconds_lose_no_line(
    step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    """15 s after the run is created, while the flow logs a line a second, both websockets are cut
    and can only reconnect 4 s later: the logs stream is live only, so the waiter must read back
    what it missed (the last read, 30 s back from the end, does not reach that far)."""
    _outage("hold", (15.0, 19.0), step_env, prefect_server, prefect)


@pytest.mark.long
def test_websockets_gone_for_good_lose_no_line(
    step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    """15 s after the run is created both websockets are cut and refused from then on: the waiter
    polls the state and reads the lines by request."""
    _outage("refuse", (15.0, 10_000.0), step_env, prefect_server, prefect)


# -- a server that stops answering -----------------------------------------------------------------


def test_dead_server_while_waiting_ends_by_the_deadline(
    step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    """The server goes silent right after creating the run (TCP accepted, nothing answered): the
    pipe ends with one clear line by TIMEOUT + the stated grace, not after the client's retries."""
    timeout = 8
    schedule = Schedule(seed=0, dead_after=is_create)
    try:
        faulted = run_faulted(
            step_env,
            prefect_server,
            prefect,
            schedule,
            "sleepy/ci",
            expect_exit=1,
            PARAMETERS='{"seconds": 60}',
            TIMEOUT=str(timeout),
        )
    finally:
        cancel_leftover(prefect, step_env["TAGS_0"])
    after_death = faulted.ended - faulted.event_time("goes dead")
    TALLY.note(f"dead server after the create (TIMEOUT={timeout}): ended {after_death:.1f}s after it died")
    bound = timeout + waiter.DEADLINE_GRACE + run.CANCEL_GRACE_SECONDS + 5
    assert after_death <= bound, f"{after_death:.1f}s > {bound}s\n{faulted}"
    [line] = checks.fail_lines(faulted.result.output)
    assert "did not answer" in line or "TIMEOUT" in line, str(faulted)
    assert not checks.own_tracebacks(faulted.result.output), str(faulted)
    assert not faulted.verdict.problems, str(faulted)  # one run, one ✖ line, no traceback, no leak
    leakscan.assert_clean(faulted.result.output)


@pytest.mark.long
def test_dead_server_from_the_start(
    step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    """Nothing ever answers: one clear line within one call's budget (retries included)."""
    schedule = Schedule(seed=0, dead_from_start=True)
    faulted = run_faulted(step_env, prefect_server, prefect, schedule, expect_exit=1, expect_runs=0, TIMEOUT="8")
    took = faulted.ended - faulted.proxy.stats.events[0].at
    TALLY.note(f"dead server from the start (TIMEOUT=8): ended {took:.1f}s after the first connection")
    assert took <= prefect_api.CALL_BUDGET_SECONDS + 10, str(faulted)
    [line] = checks.fail_lines(faulted.result.output)
    assert "did not answer within" in line and "reading deployment" in line, str(faulted)
    assert not faulted.verdict.problems, str(faulted)  # exit 1, no run, one ✖ line, no traceback, no leak


@pytest.mark.long
def test_dead_server_mid_wait_with_a_long_timeout(
    step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    """The server dies while the websockets are up and TIMEOUT is far away: the frozen streams are
    noticed (keepalive), the state read that follows gives up after one call's budget."""
    schedule = Schedule(seed=0, dead_after=is_run_read)
    try:
        faulted = run_faulted(
            step_env,
            prefect_server,
            prefect,
            schedule,
            "sleepy/ci",
            expect_exit=1,
            PARAMETERS='{"seconds": 300}',
            TIMEOUT="900",
        )
    finally:
        cancel_leftover(prefect, step_env["TAGS_0"])
    after_death = faulted.ended - faulted.event_time("goes dead")
    TALLY.note(f"dead server mid-wait (TIMEOUT=900): ended {after_death:.1f}s after it died")
    keepalive = 20 + 20  # websockets' ping interval + ping timeout: a frozen stream is noticed by then
    closing = 3 * waiter.STREAM_CLOSE_GRACE
    assert after_death <= keepalive + prefect_api.CALL_BUDGET_SECONDS + closing + 20, str(faulted)
    [line] = checks.fail_lines(faulted.result.output)
    assert "did not answer within" in line, str(faulted)
    assert not faulted.verdict.problems, str(faulted)  # one run, one ✖ line, no traceback, no leak


# -- the step is stopped ---------------------------------------------------------------------------


def _running(output: str) -> bool:
    return "Flow run is Running" in output


def _cancelled_run(prefect: PrefectInspector, tag: str) -> tuple[list[Any], str | None]:
    """The step's runs and the state of its run, once that is Cancelling or Cancelled (30 s at most)."""
    deadline = time.monotonic() + 30
    runs, state = _run_state(prefect, tag)
    while state not in ("CANCELLING", "CANCELLED") and time.monotonic() < deadline:
        time.sleep(0.5)
        runs, state = _run_state(prefect, tag)
    return runs, state


def _run_state(prefect: PrefectInspector, tag: str) -> tuple[list[Any], str | None]:
    runs = checks.runs_with_tag(prefect, tag)
    state = runs[0].state.type.value if len(runs) == 1 and runs[0].state else None
    return runs, state


def test_sigterm_cancels_the_run(step_env: dict[str, str], prefect: PrefectInspector) -> None:
    env = {**step_env, "DEPLOYMENT": "sleepy/ci", "PARAMETERS": '{"seconds": 60}'}
    pipe = BackgroundPipe(env)
    try:
        assert pipe.wait_for(_running, timeout=120), pipe.output
        code, took = pipe.stop(timeout=30)
    finally:
        pipe.kill()
    output = checks.plain(pipe.output)
    assert code is not None and code != 0, output
    assert code == 143, output  # main.py: Stopped → 143 (128 + SIGTERM)
    TALLY.note(f"SIGTERM on a running flow: exit {code} after {took:.1f}s")
    assert took <= 5.0, f"took {took:.1f}s to stop\n{output}"
    assert "Stop requested: cancelling" in output, output
    [line] = checks.fail_lines(output)
    assert "was cancelled" in line, output
    assert "last line of sleepy" not in output, output
    assert not checks.own_tracebacks(output), output
    leakscan.assert_clean(output)
    runs, state = _cancelled_run(prefect, step_env["TAGS_0"])
    assert len(runs) == 1 and state in ("CANCELLING", "CANCELLED"), (state, output)


def test_sigterm_while_the_server_is_dead_still_exits_promptly(
    step_env: dict[str, str], prefect_server: PrefectServer, prefect: PrefectInspector
) -> None:
    """Stopped while the server has gone silent: the cancel cannot get through, the pipe says the
    run may still be running and exits within the cancel grace, not after the client's retries."""
    with FaultProxy(prefect_server.port, Schedule(seed=0)) as proxy:
        env = {**step_env, "DEPLOYMENT": "sleepy/ci", "PARAMETERS": '{"seconds": 60}', "PREFECT_API_URL": proxy.api_url}
        pipe = BackgroundPipe(env)
        try:
            assert pipe.wait_for(_running, timeout=120), pipe.output
            proxy.go_dead()
            code, took = pipe.stop(timeout=60)
        finally:
            pipe.kill()
            cancel_leftover(prefect, step_env["TAGS_0"])
    output = checks.plain(pipe.output)
    assert code == 143, output
    TALLY.note(f"SIGTERM with a dead server: exit {code} after {took:.1f}s")
    assert took <= run.CANCEL_GRACE_SECONDS + 5, f"took {took:.1f}s to stop\n{output}"
    [line] = checks.fail_lines(output)
    assert "may still be running" in line, output
    assert not checks.own_tracebacks(output), output
    leakscan.assert_clean(output)


def test_sigterm_while_a_report_is_stuck_still_cancels_the_run(
    step_env: dict[str, str], prefect: PrefectInspector, trickling: str
) -> None:
    """A Bitbucket API that trickles its answer holds the report call; a stop still cancels the run,
    prints one line and exits 143 at once (nothing waits for the stuck call's thread)."""
    env = {
        **step_env,
        "DEPLOYMENT": "sleepy/ci",
        "PARAMETERS": '{"seconds": 60}',
        "REPORT": "true",
        "BITBUCKET_ACCESS_TOKEN": "t0ken-for-the-stuck-report",
        "BITBUCKET_API_URL": f"{trickling}/2.0",
        "BITBUCKET_PIPELINES_PROXY": trickling,
    }
    pipe = BackgroundPipe(env)
    try:
        assert pipe.wait_for(lambda out: "created for sleepy/ci" in out, timeout=120), pipe.output
        time.sleep(1.0)  # the status post is now trickling
        code, took = pipe.stop(timeout=30)
    finally:
        pipe.kill()
    output = checks.plain(pipe.output)
    assert code == 143, output
    TALLY.note(f"SIGTERM during a stuck report call: exit {code} after {took:.1f}s")
    assert took <= 8.0, f"took {took:.1f}s to stop\n{output}"  # the cancel, and at most 3 s for the last report
    [line] = checks.fail_lines(output)
    assert "was cancelled" in line, output
    runs, state = _cancelled_run(prefect, step_env["TAGS_0"])
    assert len(runs) == 1 and state in ("CANCELLING", "CANCELLED"), (state, output)
