"""A failed ``prefect deploy``, read from its output: one :class:`~pipe.errors.DeployError` line with
Prefect's own message (the last exception of a traceback, without its module path) and the fix for
the failures Prefect users meet (a missing work pool or flow, a broken flow file, a rejected key, an
unreachable API, a failing build step, a refused field).
"""

from __future__ import annotations

import re

from pipe.deploy.cli import CliOutput
from pipe.errors import DeployError
from pipe.secret import mask

_MORE_INFO = re.compile(r"\s*-\s*For more information check: \S+\s*$")


def failure(output: CliOutput, shown: str, code: int | None, done: str = "") -> DeployError:
    """One line from the CLI's output: Prefect's own message and the fix."""
    lines = [line.strip() for line in output.lines if line.strip()]
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
    detail = _MORE_INFO.sub("", mask(detail))
    if len(detail) > 400:
        detail = detail[:397] + "..."
    return DeployError(f"prefect deploy failed (exit {code}): {detail or 'no message'}{done}", _fix_for(detail, shown))


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
        re.compile(r"StepExecutionError|run_shell_script"),
        "fix the failing build or push step of {file} (its output is above)",
    ),
    (re.compile(r"422|Unprocessable"), "Prefect refused a field of the deployment: fix it in {file}"),
)


def _fix_for(detail: str, shown: str) -> str:
    for pattern, fix in _FIXES:
        if match := pattern.search(detail):
            return fix.format(file=shown, **match.groupdict())
    return "see the prefect deploy output above"
