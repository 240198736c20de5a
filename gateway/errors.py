"""The gateway's errors: one line a person can act on (what is wrong, and the fix)."""

from __future__ import annotations


class GatewayError(Exception):
    """A start-up problem: names the setting, the cause and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def line(self) -> str:
        return f"✖ {self.message}; {self.fix}"


class PolicyError(GatewayError):
    """One or more mistakes in the policy file, each on its own line."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"policy {path} has {len(problems)} problem(s)", "fix each line below and start again")
        self.path = path
        self.problems = problems

    def line(self) -> str:
        return "\n".join(f"✖ policy {self.path}: {problem}" for problem in self.problems)
