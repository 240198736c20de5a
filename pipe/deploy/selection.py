"""Which deployments of the prefect.yaml a deploy takes: ``DEPLOYMENT`` (or each entry of
``DEPLOYMENTS``) as a ``flow/deployment`` name, a bare deployment name, or a glob.

The flow part matches the flow's name as Prefect registers it (``@flow(name=...)``, else the function
name with ``_`` → ``-``) or the function name; Prefect's own ``--name`` matching knows only the
function name, which is why the pipe selects here and hands the CLI just the selection.
"""

from __future__ import annotations

import fnmatch

from pipe.config import Config, DeploymentRef
from pipe.deploy.project import DeploymentSpec, Project
from pipe.errors import DeployError


def select(project: Project, config: Config) -> list[DeploymentSpec]:
    """The deployments ``DEPLOYMENT`` (or each entry of ``DEPLOYMENTS``) names, in that order; all of
    them when neither is set. For ACTION=deploy-and-run each name must select exactly one, so the
    names returned line up with what the run part runs."""
    available = ", ".join(spec.label for spec in project.deployments)
    refs = requested(config)
    if not refs:
        chosen = list(project.deployments)
    else:
        chosen = []
        for variable, ref in refs:
            if ref.is_id:
                raise DeployError(
                    f"{variable} {ref.text!r} is an id; ACTION={config.action} selects deployments of {project.shown} by name",
                    f"use one of: {available} (or a glob such as 'flow/*')",
                )
            found = [spec for spec in project.deployments if matches(spec, ref.text.strip())]
            if not found:
                raise DeployError(
                    f"{variable} {ref.text!r} matches none of the deployments in {project.shown}: {available}",
                    "use one of these names, a glob such as 'flow/*', or leave DEPLOYMENT unset to deploy them all",
                )
            if config.action == "deploy-and-run" and len(found) != 1:
                raise DeployError(
                    f"ACTION=deploy-and-run runs what it deploys, but {variable} {ref.text!r} selects "
                    f"{len(found)}: {', '.join(spec.label for spec in found)}",
                    "name exactly one 'flow-name/deployment-name', or use ACTION=deploy",
                )
            if config.action == "deploy-and-run" and found[0] in chosen:
                raise DeployError(
                    f"{variable} {ref.text!r} selects {found[0].label}, which another entry already names",
                    "name each deployment once in DEPLOYMENTS",
                )
            chosen.extend(spec for spec in found if spec not in chosen)
    for spec in chosen:
        if spec.problem:
            raise DeployError(*spec.problem)
    seen: dict[str, DeploymentSpec] = {}
    for spec in chosen:
        key = spec.label
        if key in seen:
            raise DeployError(
                f"{project.shown} has two deployments named {key!r} (#{seen[key].index + 1} and #{spec.index + 1})",
                "rename one of them; the second would overwrite the first",
            )
        seen[key] = spec
    return chosen


def requested(config: Config) -> list[tuple[str, DeploymentRef]]:
    """What the variables select, each with the variable it came from (for messages): ``DEPLOYMENT``
    or ``DEPLOYMENTS item N``."""
    return [(target.source, target.ref) for target in config.targets]


def matches(spec: DeploymentSpec, pattern: str) -> bool:
    """``flow/deployment`` or a bare deployment name; either part may be a glob (``*``, ``?``, ``[..]``)."""
    flow_part, slash, name_part = pattern.partition("/")
    if not slash:
        return fnmatch.fnmatchcase(spec.name, flow_part)
    return fnmatch.fnmatchcase(spec.name, name_part) and any(
        fnmatch.fnmatchcase(name, flow_part) for name in spec.flow_names
    )
