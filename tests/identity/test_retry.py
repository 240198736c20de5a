"""The bounded retry: transient failures retried with growing pauses; definite ones raised at once."""

from __future__ import annotations

import pytest

from pipe.identity import retry


class Flaky(Exception):
    pass


class Final(Exception):
    pass


def failing(*errors: Exception, result: str = "ok") -> tuple[list[float], object]:
    timeouts: list[float] = []
    queue = list(errors)

    def attempt(timeout: float) -> str:
        timeouts.append(timeout)
        if queue:
            raise queue.pop(0)
        return result

    return timeouts, attempt


def transient(exc: BaseException) -> bool:
    return isinstance(exc, Flaky)


def test_transient_then_success(pauses: list[float]) -> None:
    timeouts, attempt = failing(Flaky(), Flaky())
    assert retry.call("hop", attempt, transient) == "ok"  # type: ignore[arg-type]
    assert len(timeouts) == 3 and len(pauses) == 2
    assert 1.0 <= pauses[0] <= 1.25 and 2.5 <= pauses[1] <= 3.125
    assert all(0 < t <= retry.ATTEMPT_TIMEOUT for t in timeouts)


def test_definite_failure_is_not_retried(pauses: list[float]) -> None:
    timeouts, attempt = failing(Final())
    with pytest.raises(Final):
        retry.call("hop", attempt, transient)  # type: ignore[arg-type]
    assert len(timeouts) == 1 and pauses == []


def test_gives_up_after_three_tries(pauses: list[float]) -> None:
    timeouts, attempt = failing(Flaky("1"), Flaky("2"), Flaky("3"), Flaky("4"))
    with pytest.raises(retry.GaveUp) as info:
        retry.call("the hop", attempt, transient)  # type: ignore[arg-type]
    assert info.value.attempts == 3 and str(info.value.last) == "3" and info.value.hop == "the hop"
    assert isinstance(info.value.__cause__, Flaky)
    assert len(timeouts) == 3 and len(pauses) == 2


def test_budget_cuts_attempt_timeouts_and_stops_early(monkeypatch: pytest.MonkeyPatch, pauses: list[float]) -> None:
    """With a fake clock where each attempt uses 8 s, the 18 s budget allows two attempts, not three."""
    now = [0.0]
    monkeypatch.setattr(retry, "clock", lambda: now[0])
    timeouts: list[float] = []

    def attempt(timeout: float) -> str:
        timeouts.append(timeout)
        now[0] += 8
        raise Flaky()

    monkeypatch.setattr(retry, "sleep", lambda s: (pauses.append(s), now.__setitem__(0, now[0] + s)))
    with pytest.raises(retry.GaveUp) as info:
        retry.call("hop", attempt, transient)
    assert info.value.attempts == 2
    assert timeouts[0] == retry.ATTEMPT_TIMEOUT and timeouts[1] < retry.ATTEMPT_TIMEOUT
    assert now[0] < retry.BUDGET_SECONDS + retry.ATTEMPT_TIMEOUT
