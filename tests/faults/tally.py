"""The figures of a fault session (seeds run, faults injected by type, outcomes, exactly-one-run
checks), printed at the end of the test session by ``tests/faults/conftest.py``."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from tests.faults.checks import Verdict
from tests.faults.proxy import FaultProxy


@dataclass
class Tally:
    seeds: set[int] = field(default_factory=set)
    runs: Counter[str] = field(default_factory=Counter)  # pipe runs per deployment
    faults: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "greet/ci exit 0"
    one_run_checks: int = 0
    one_run_held: int = 0
    held_up: int = 0  # runs with no problem at all
    slowest: float = 0.0
    notes: list[str] = field(default_factory=list)  # measured bounds and the like
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, seed: int | None, verdict: Verdict, proxy: FaultProxy | None) -> None:
        with self._lock:
            if seed is not None:
                self.seeds.add(seed)
            self.runs[verdict.deployment] += 1
            self.outcomes[f"{verdict.deployment} exit {verdict.result.code}"] += 1
            self.one_run_checks += 1
            self.one_run_held += len(verdict.runs) == verdict.expect_runs
            self.held_up += not verdict.problems
            self.slowest = max(self.slowest, verdict.elapsed)
            if proxy is not None:
                self.faults.update(proxy.stats.faults)
                self.server_errors += proxy.stats.server_errors

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def lines(self) -> list[str]:
        if not self.runs:
            return list(self.notes)
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        return [
            f"seeds: {len(self.seeds)}; pipe runs: {sum(self.runs.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.runs.items()))})",
            f"faults injected: {sum(self.faults.values())} ({faults}); the server's own 429/5xx: {self.server_errors}",
            f"outcomes: {', '.join(f'{k}: {v}' for k, v in sorted(self.outcomes.items()))}",
            f"runs on the server as expected (exactly one; none when nothing may be created): "
            f"{self.one_run_held}/{self.one_run_checks}; pipe runs with no problem: "
            f"{self.held_up}/{sum(self.runs.values())}; slowest run {self.slowest:.1f}s",
            *self.notes,
        ]


TALLY = Tally()
