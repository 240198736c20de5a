"""A failed ``prefect deploy``, read from its output: one :class:`~pipe.errors.DeployError` line with
Prefect's own message (the last exception of a traceback, without its module path) and the fix for
the failures Prefect users meet (a missing work pool or flow, a broken flow file, a rejected key, an
unreachable API, a failing build step, a refused field).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from pipe.deploy.cli import CliOutput
from pipe.errors import DeployError
from pipe.identity import gateway_rule
from pipe.remote_text import clipped
from pipe.secret import mask

_MORE_INFO = re.compile(r"\s*-\s*For more information check: \S+\s*$")
# pydantic's error lines: "cron" then "  Value error, Invalid cron string: ... [type=value_error, ...]",
# then a link line that says nothing of the cause.
_PYDANTIC_LINK = re.compile(r"^For further information visit https://errors\.pydantic\.dev/")
_PYDANTIC_ERROR = re.compile(r"^(?P<message>.+?)\s*\[type=[^\]]*\]$")


def failure(output: CliOutput, shown: str, code: int | None, done: str = "") -> DeployError:
    """One line from the CLI's output: Prefect's own message and the fix."""
    lines = [line.strip() for line in output.lines if line.strip() and not _PYDANTIC_LINK.match(line.strip())]
    if any("Skipping deployment configuration due to validation errors" in line for line in lines):
        fields = [line.lstrip("•").strip() for line in lines if line.startswith("•")]
        return DeployError(
            f"Prefect rejected {shown}: invalid fields in {'; '.join(fields) or 'the file'}{done}",
            "fix those fields (the deployment schema: https://docs.prefect.io/v3/deploy/infrastructure-concepts/prefect-yaml)",
        )
    detail = ""
    if output.exceptions and lines and lines[-1] == "An exception occurred.":
        detail = exception_detail(output.exceptions)
    else:
        for line in reversed(lines):
            if line != "An exception occurred.":
                detail = line
                break
    cause = _validation_cause(lines)
    if cause and (not detail or _PYDANTIC_ERROR.match(detail)):
        detail = cause
    elif cause and cause not in detail:
        detail = f"{detail}: {cause}"
    detail = _MORE_INFO.sub("", mask(detail))
    if denied := gateway_rule.denial(detail):
        return DeployError(f"prefect deploy failed (exit {code}): {denied.message()}{done}", denied.fix)
    return DeployError(
        f"prefect deploy failed (exit {code}): {clipped(detail, 400) or 'no message'}{done}", _fix_for(detail, shown)
    )


def _validation_cause(lines: list[str]) -> str:
    """pydantic's last error as ``field: message`` (``cron: Invalid cron string: "0 25 * * *"``), when the
    output holds one: the exception line above it only says ``1 validation error for CronSchedule``."""
    for index in range(len(lines) - 1, -1, -1):
        if match := _PYDANTIC_ERROR.match(lines[index]):
            message = match.group("message").removeprefix("Value error, ")
            field = lines[index - 1] if index and re.fullmatch(r"[\w.\[\]-]+", lines[index - 1]) else ""
            return f"{field}: {message}" if field else message
    return ""


def exception_detail(exceptions: list[str]) -> str:
    """The last exception of a traceback chain, without its module path; a step failure also names
    the step's own error (the first exception of the chain)."""
    final = _short_exception(exceptions[-1])
    if "StepExecutionError" in exceptions[-1] and len(exceptions) > 1:
        return f"{final}: {_short_exception(exceptions[0])}"
    return final


def _short_exception(line: str) -> str:
    kind, sep, message = line.partition(": ")
    if sep and re.fullmatch(r"[\w.]+", kind):
        return f"{kind.rsplit('.', 1)[-1]}: {message.strip()}"
    return line.strip()


_FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"work pool '(?P<pool>[^']*)' which does not exist"),
        "create the work pool (e.g. 'prefect work-pool create {pool} --type process') or fix work_pool.name in {file}",
    ),
    (re.compile(r"A work pool is required"), "set 'work_pool: {{name: <pool>}}' for each deployment in {file}"),
    (re.compile(r"MissingFlowError|is not a flow"), "fix the entrypoint in {file}: path/to/file.py:flow_function"),
    (re.compile(r"ScriptError|SyntaxError"), "fix the flow file named in the message and commit it"),
    (
        re.compile(r"401|Unauthorized"),
        "check PREFECT_API_KEY or PREFECT_API_AUTH_STRING (expired, revoked, or another workspace's)",
    ),
    (
        re.compile(r"403|Forbidden"),
        "deploying writes deployments: use a key whose role may create them (Prefect Cloud role Developer or higher)",
    ),
    (
        re.compile(r"ConnectError|ConnectTimeout|connection attempts failed|Name or service not known|getaddrinfo"),
        "check PREFECT_API_URL and that it is reachable from Bitbucket's runners",
    ),
    (
        re.compile(r"git: not found|git: command not found|No such file or directory: 'git'"),
        "the pipe's image has no git: run git in an earlier step of the pipeline, or let a git_clone pull step "
        "clone on the worker",
    ),
    (
        re.compile(r"StepExecutionError|run_shell_script"),
        "fix the failing build or push step of {file} (its output is above)",
    ),
    (re.compile(r"422|Unprocessable"), "Prefect refused a field of the deployment: fix it in {file}"),
)


def _fix_for(detail: str, shown: str) -> str:
    for pattern, fix in _FIXES:
        if match := pattern.search(detail):
            text = fix.format(file=shown, **match.groupdict())
            folder = PurePosixPath(shown).parent
            if str(folder) not in ("", ".") and ("entrypoint" in text or "step" in text):
                # Prefect runs in the repository root whatever folder the prefect.yaml is in.
                text += f"; entrypoints and the paths of build and push steps are relative to the repository root, not {folder}/"
            return text
    return "see the prefect deploy output above"
