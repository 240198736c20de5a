"""Configure: the environment, read once, validated into one typed :class:`Config` that is passed down.

This is the only module that reads the environment (a test enforces it). The variables are validated
against the schema (:mod:`pipe.schema`), their values parsed (:mod:`pipe.values`), and the build, the
identity, reporting, deploy and output settings gathered here; every problem becomes one
:class:`ConfigError` line that names the variable and the fix. Nothing here talks to the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipe import identity
from pipe.bitbucket.settings import ReportSettings
from pipe.build import Build, from_checkout
from pipe.credentials import is_user_password
from pipe.errors import ConfigError
from pipe.preview import settings as preview_settings
from pipe.preview.settings import PreviewSettings
from pipe.schema import SCHEMA, validate, yaml_scalar
from pipe.secret import Secret, looks_secret, register
from pipe.urls import parse_http_url
from pipe.values import (
    DEPLOY_ACTIONS,
    DeploymentRef,
    Target,
    parse_api_url,
    parse_deployment,
    parse_deployment_selection,
    parse_json_object,
    parse_name,
    parse_tags,
    parse_targets,
    parse_text,
)

__all__ = ["SCHEMA", "Config", "DeploySettings", "DeploymentRef", "OutputSettings", "Target", "load"]

DEFAULT_PREFECT_FILE = "prefect.yaml"


@dataclass(frozen=True)
class DeploySettings:
    """What ``ACTION=deploy`` works on: the clone, its prefect.yaml, and the step's environment (for the
    Prefect CLI subprocess and the prefect.yaml's ``{{ $NAME }}`` placeholders)."""

    clone_dir: Path
    prefect_file: str
    environment: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class OutputSettings:
    """Where later steps find the runs: the toolkit's shared storage and Bitbucket's output variables file."""

    shared_dir: str | None = None
    variables_path: str | None = None


@dataclass(frozen=True)
class Config:
    """Everything the pipe was asked to do, validated: read once from the environment by :func:`load`
    and passed down. Nothing else reads the environment."""

    api_url: str
    ui_url: str | None
    api_key: Secret | None
    auth_string: Secret | None
    action: str
    targets: list[Target]  # DEPLOYMENT, or each entry of DEPLOYMENTS (for deploy: the selection)
    parameters: dict[str, Any]
    job_variables: dict[str, Any] | None
    tags: list[str]
    flow_run_name: str | None
    work_queue_name: str | None
    idempotency_key: str | None
    commit_parameters: bool
    wait: bool
    timeout: int
    cancel_on_timeout: bool
    stream_logs: bool
    dry_run: bool
    debug: bool
    build: Build = field(default_factory=Build)
    identity: identity.Identity = field(default_factory=identity.Identity)
    report: ReportSettings = field(default_factory=lambda: ReportSettings(enabled=False))
    deploy: DeploySettings = field(default_factory=lambda: DeploySettings(Path.cwd(), DEFAULT_PREFECT_FILE, {}))
    outputs: OutputSettings = field(default_factory=OutputSettings)
    preview: PreviewSettings = field(default_factory=PreviewSettings)

    @property
    def deploys(self) -> bool:
        return self.action in DEPLOY_ACTIONS


def debug_requested(env: Mapping[str, str] | None = None) -> bool:
    """DEBUG as the schema reads it (YAML: true/True/yes/on), before the schema has run."""
    value = (os.environ if env is None else env).get("DEBUG", "")
    return yaml_scalar(value) is True


def load(env: Mapping[str, str] | None = None, schema: Mapping[str, dict[str, Any]] | None = None) -> Config:
    """Validate ``env`` (by default the process environment) into a :class:`Config`."""
    env = dict(os.environ if env is None else env)
    schema = dict(schema or SCHEMA)
    # Mask credentials from the start: a validation message must not be able to show one.
    register(*(value for name, value in env.items() if looks_secret(name)))
    variables = validate(schema, env)

    api_key = _secret(variables.get("PREFECT_API_KEY"))
    auth_string = _secret(variables.get("PREFECT_API_AUTH_STRING"))
    if api_key and auth_string:
        raise ConfigError(
            "PREFECT_API_KEY and PREFECT_API_AUTH_STRING are both set",
            "keep PREFECT_API_KEY for Prefect Cloud or PREFECT_API_AUTH_STRING for a self-hosted server, not both",
        )
    if auth_string and not is_user_password(auth_string.reveal()):
        raise ConfigError("PREFECT_API_AUTH_STRING is not of the form user:password", "set it to 'user:password'")

    action = variables["ACTION"]
    api_url = parse_api_url(variables["PREFECT_API_URL"])
    ui_url = variables.get("PREFECT_UI_URL")
    if ui_url:
        ui_url = parse_http_url("PREFECT_UI_URL", ui_url).rstrip("/")

    deployment_text = variables.get("DEPLOYMENT")
    # The deploy actions select deployments of the prefect.yaml by name or glob (pipe/deploy/).
    parse = parse_deployment_selection if action in DEPLOY_ACTIONS else parse_deployment
    deployment = parse(deployment_text) if deployment_text else None
    targets = parse_targets(list(variables.get("DEPLOYMENTS") or []), parse)
    if deployment and targets:
        raise ConfigError(
            "DEPLOYMENT and DEPLOYMENTS are both set", "use DEPLOYMENT for one deployment, DEPLOYMENTS for several"
        )
    if deployment:
        targets = [Target(deployment)]
    for target in targets:
        if action == "preview" and target.parameters:
            raise ConfigError(
                f"{target.source} has parameters of its own; the previews PREVIEW_RUN starts all take PARAMETERS",
                "move them to PARAMETERS",
            )
    build = _build(env)
    report = ReportSettings.load(variables)
    if action in ("run", "deploy-and-run") and not targets:
        raise ConfigError(
            "DEPLOYMENT is required",
            "set it to 'flow-name/deployment-name' or a deployment id (or DEPLOYMENTS to run several)",
        )

    return Config(
        api_url=api_url,
        ui_url=ui_url,
        api_key=api_key,
        auth_string=auth_string,
        action=action,
        targets=targets,
        parameters=parse_json_object("PARAMETERS", variables.get("PARAMETERS")) or {},
        job_variables=parse_json_object("JOB_VARIABLES", variables.get("JOB_VARIABLES")),
        tags=parse_tags(list(variables.get("TAGS") or [])),
        flow_run_name=parse_text("FLOW_RUN_NAME", variables.get("FLOW_RUN_NAME"), limit=200),
        work_queue_name=parse_name("WORK_QUEUE_NAME", variables.get("WORK_QUEUE_NAME")),
        idempotency_key=parse_text("IDEMPOTENCY_KEY", variables.get("IDEMPOTENCY_KEY"), limit=200),
        commit_parameters=variables["COMMIT_PARAMETERS"],
        wait=variables["WAIT"],
        timeout=variables["TIMEOUT"],
        cancel_on_timeout=variables["CANCEL_ON_TIMEOUT"],
        stream_logs=variables["STREAM_LOGS"],
        dry_run=variables["DRY_RUN"],
        debug=variables["DEBUG"],
        build=build,
        identity=identity.load(variables, env),
        report=report,
        deploy=DeploySettings(
            clone_dir=_clone_dir(env),
            prefect_file=str(variables.get("PREFECT_FILE") or DEFAULT_PREFECT_FILE),
            environment=env,
        ),
        outputs=OutputSettings(
            shared_dir=env.get("BITBUCKET_PIPE_SHARED_STORAGE_DIR") or None,
            variables_path=env.get("BITBUCKET_PIPELINES_VARIABLES_PATH") or None,
        ),
        preview=preview_settings.load(variables, env, action, build, report.auth, report.api_url),
    )


def _build(env: Mapping[str, str]) -> Build:
    """Bitbucket's variables; outside Pipelines (no BITBUCKET_COMMIT), the git checkout the pipe runs in."""
    build = Build.from_env(env)
    if build.commit_sha:
        return build
    return from_checkout(_clone_dir(env)) or build


def _clone_dir(env: Mapping[str, str]) -> Path:
    """The repository's clone: BITBUCKET_CLONE_DIR in Pipelines, else the working directory."""
    text = env.get("BITBUCKET_CLONE_DIR", "").strip()
    return Path(text).absolute() if text else Path.cwd()


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None
