"""What Prefect checks one deployment at a time, checked for every selected deployment before any is
deployed: schedules (cron, interval, rrule, timezone, anchor date), triggers and the concurrency limit.

Prefect deploys the deployments of a prefect.yaml one after the other and stops at the first that it
refuses — an invalid cron in the second of three leaves the first deployed. The checks here are
Prefect's own: the schedule, trigger and concurrency classes of the pipe's Prefect, given each value
as the CLI would give it (environment placeholders resolved). A value that still holds a placeholder
after that (a build step's output) is left to Prefect.
"""

from __future__ import annotations

import copy
from typing import Any

from pipe.deploy.placeholders import resolve_env_all, templated
from pipe.deploy.project import DeploymentSpec, Project
from pipe.errors import DeployError

SCHEDULE_DOCS = "https://docs.prefect.io/v3/automate/add-schedules"


def check_deployment_fields(
    project: Project, selected: list[DeploymentSpec], document: dict[str, Any], env: dict[str, str]
) -> None:
    """Raise one :class:`DeployError` naming every refused field of every selected deployment."""
    problems: list[str] = []
    for spec, entry in zip(selected, document["deployments"], strict=True):
        entry = resolve_env_all(entry, env)
        problems += [f"{spec.label}: {problem}" for problem in _deployment_problems(spec, entry)]
    if problems:
        raise DeployError(
            f"{project.shown}: Prefect would refuse {'; '.join(problems)}; nothing was deployed",
            f"fix these fields (schedules: {SCHEDULE_DOCS})",
        )


def _deployment_problems(spec: DeploymentSpec, entry: dict[str, Any]) -> list[str]:
    problems = []
    schedules = entry.get("schedules")
    if isinstance(schedules, list):
        for number, schedule in enumerate(schedules, start=1):
            if isinstance(schedule, dict) and not templated(schedule):
                problem = _schedule_problem(schedule)
                if problem:
                    problems.append(f"schedule #{number}: {problem}")
    triggers = entry.get("triggers")
    if isinstance(triggers, list):
        for number, trigger in enumerate(triggers, start=1):
            problem = _trigger_problem(spec.name, trigger)
            if problem:
                problems.append(f"trigger #{number}: {problem}")
    limit = entry.get("concurrency_limit")
    if limit is not None and not templated(limit):
        problem = _concurrency_problem(limit)
        if problem:
            problems.append(f"concurrency_limit: {problem}")
    return problems


def _schedule_problem(schedule: dict[str, Any]) -> str | None:
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    try:
        _schedule_config_to_deployment_schedule(copy.deepcopy(schedule))
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        return describe(exc)
    return None


def _trigger_problem(deployment_name: str, trigger: Any) -> str | None:
    if not isinstance(trigger, dict):
        return "must be a mapping"
    spec = copy.deepcopy(trigger)
    parameters = spec.pop("parameters", None)  # event templates ({{ event.name }}) stay for the server
    if templated(spec):
        return None
    if parameters is not None:
        spec["parameters"] = parameters
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    try:
        _initialize_deployment_triggers(deployment_name, [spec])
    except (ValueError, TypeError) as exc:
        return describe(exc)
    return None


def _concurrency_problem(limit: Any) -> str | None:
    from prefect.client.schemas.objects import ConcurrencyOptions
    from pydantic import TypeAdapter

    try:
        if isinstance(limit, dict):
            TypeAdapter(int).validate_python(limit.get("limit"))
            options = {key: limit[key] for key in ("collision_strategy", "grace_period_seconds") if key in limit}
            ConcurrencyOptions.model_validate({"collision_strategy": "ENQUEUE", **options})
        else:
            TypeAdapter(int).validate_python(limit)
    except (ValueError, TypeError) as exc:
        return describe(exc)
    return None


def describe(exc: Exception) -> str:
    """An exception as one short line: pydantic's first error as ``field: message``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
        except (IndexError, TypeError):
            first = None
        if isinstance(first, dict):
            message = str(first.get("msg", "")).removeprefix("Value error, ")
            where = ".".join(str(part) for part in first.get("loc", ()))
            return f"{where}: {message}" if where else message
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
