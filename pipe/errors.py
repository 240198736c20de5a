"""The one family of exceptions the pipe raises on purpose.

Every error carries the sentence a person should read: what failed, why, and how to fix it.
Modules raise them (``raise X(...) from exc``); only the entry point catches them, once.
"""

from __future__ import annotations


class PipeError(Exception):
    """Base class: ``str(error)`` is the one line shown to the user."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = self.message.rstrip(".")
        if self.fix:
            fix = self.fix.rstrip(".")
            return f"{text}. {fix[:1].upper()}{fix[1:]}."
        return f"{text}."


class ConfigError(PipeError):
    """A variable is missing, malformed or contradicts another one."""


class PrefectError(PipeError):
    """The Prefect API refused a request or could not be reached."""


class DeploymentNotFound(PrefectError):
    """The deployment named in DEPLOYMENT does not exist."""


class ParameterError(ConfigError):
    """PARAMETERS do not match the deployment's parameter schema."""


class IdentityError(PipeError):
    """An identity hop (OIDC token, cloud STS, secret store) failed."""


class DeployError(PipeError):
    """``prefect deploy`` failed."""


class RunFailed(PipeError):
    """The flow run ended in a state other than COMPLETED (the summary says more)."""


class WaitTimeout(PipeError):
    """The flow run did not finish within TIMEOUT."""


class Stopped(PipeError):
    """The step was stopped (SIGTERM/SIGINT) while the pipe was running."""

    exit_code = 143
