"""Configure: the variables a user sets, validated into one typed :class:`Config`.

The schema below is the interface (README's Variables table mirrors it). Validation uses the
bitbucket-pipes-toolkit ``Pipe`` (Cerberus) and then checks what a schema cannot express; every
problem becomes one :class:`ConfigError` line that names the variable and the fix. Nothing here
talks to the network.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pipe import identity
from pipe.bitbucket.settings import ReportSettings
from pipe.bitbucket.variables import VARIABLES as REPORT_VARIABLES
from pipe.build import Build, from_checkout
from pipe.credentials import is_user_password
from pipe.errors import ConfigError
from pipe.identity.variables import VARIABLES as IDENTITY_VARIABLES
from pipe.secret import Secret, looks_secret, register
from pipe.urls import parse_http_url

ACTIONS = ("run", "deploy", "deploy-and-run")
DEPLOY_ACTIONS = ("deploy", "deploy-and-run")
DEFAULT_PREFECT_FILE = "prefect.yaml"
MAX_JSON_BYTES = 512 * 1024
MAX_TIMEOUT = 7 * 24 * 3600
# Prefect refuses these in names (flows, deployments, work queues).
_BANNED_NAME_CHARS = set("/%&><")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _string(hint: str, **rules: Any) -> dict[str, Any]:
    return {"type": "string", "required": False, "nullable": True, "meta": {"hint": hint}, **rules}


def _boolean(default: bool, hint: str) -> dict[str, Any]:
    return {"type": "boolean", "required": False, "default": default, "meta": {"hint": hint}}


SCHEMA: dict[str, dict[str, Any]] = {
    "PREFECT_API_URL": _string(
        "set it to the workspace API URL, e.g. https://api.prefect.cloud/api/accounts/<id>/workspaces/<id>"
        " or https://prefect.example.com/api",
        required=True,
        empty=False,
    ),
    "PREFECT_UI_URL": _string("set it to the Prefect UI base URL, e.g. https://prefect.example.com"),
    "PREFECT_API_KEY": _string("set it as a secured variable holding a Prefect Cloud API key"),
    "PREFECT_API_AUTH_STRING": _string("set it as a secured variable holding user:password"),
    "ACTION": {
        "type": "string",
        "required": False,
        "default": "run",
        "allowed": list(ACTIONS),
        "meta": {"hint": f"use one of: {', '.join(ACTIONS)}"},
    },
    "DEPLOYMENT": _string(
        "use 'flow-name/deployment-name' or a deployment id (UUID); for ACTION=deploy also a deployment name"
        " or a glob such as 'etl/*'"
    ),
    "PREFECT_FILE": _string(
        "use the path of the prefect.yaml relative to the repository root, e.g. 'prefect.yaml' or 'flows/prefect.yaml'",
        empty=False,
    ),
    "DEPLOYMENTS": {
        "type": "list",
        "required": False,
        "schema": {"type": "string"},
        "meta": {
            "hint": "use a YAML list of 'flow/deployment' names or JSON objects such as "
            '\'{"deployment": "etl/daily", "parameters": {"full": true}}\''
        },
    },
    "PARAMETERS": _string("use a JSON object, e.g. '{\"n\": 3}'"),
    "JOB_VARIABLES": _string('use a JSON object, e.g. \'{"env": {"STAGE": "prod"}}\''),
    "TAGS": {
        "type": "list",
        "required": False,
        "schema": {"type": "string"},
        "meta": {"hint": "use a YAML list of strings, e.g. TAGS: ['etl', 'nightly']"},
    },
    "FLOW_RUN_NAME": _string("use a short name without control characters"),
    "WORK_QUEUE_NAME": _string("use the name of a work queue of the deployment's work pool"),
    "IDEMPOTENCY_KEY": _string("use a short printable string"),
    "COMMIT_PARAMETERS": _boolean(True, "use true or false"),
    "WAIT": _boolean(True, "use true or false"),
    "TIMEOUT": {
        "type": "integer",
        "required": False,
        "default": 3600,
        "min": 1,
        "max": MAX_TIMEOUT,
        "meta": {"hint": f"use a whole number of seconds between 1 and {MAX_TIMEOUT}, e.g. '600'"},
    },
    "CANCEL_ON_TIMEOUT": _boolean(True, "use true or false"),
    "DRY_RUN": _boolean(False, "use true or false"),
    "STREAM_LOGS": _boolean(True, "use true or false"),
    "DEBUG": _boolean(False, "use true or false"),
    **IDENTITY_VARIABLES,
    **REPORT_VARIABLES,
}


@dataclass(frozen=True)
class DeploymentRef:
    """What DEPLOYMENT names: a ``flow/deployment`` name or an id."""

    text: str
    id: uuid.UUID | None = None

    @property
    def is_id(self) -> bool:
        return self.id is not None


@dataclass(frozen=True)
class Target:
    """One deployment to run, with the parameters of its own (merged over PARAMETERS), and the variable
    that named it (``DEPLOYMENT`` or ``DEPLOYMENTS item 3``), for messages."""

    ref: DeploymentRef
    parameters: dict[str, Any] = field(default_factory=dict)
    source: str = "DEPLOYMENT"

    @property
    def label(self) -> str:
        return self.ref.text


MAX_TARGETS = 50


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

    @property
    def deploys(self) -> bool:
        return self.action in DEPLOY_ACTIONS


def _validate(schema: dict[str, dict[str, Any]], env: dict[str, str]) -> dict[str, Any]:
    """The toolkit's Pipe (Cerberus), validating into one readable line instead of a YAML dump.
    Imported here: the entry point reads DEBUG from this module before anything heavy loads."""
    from bitbucket_pipes_toolkit import Pipe

    class SchemaPipe(Pipe):  # type: ignore[misc]
        def validate(self) -> dict[str, Any]:
            document: dict[str, Any] = {}
            for key, rules in self.schema.items():
                if rules.get("type") == "list":
                    document[key] = _array(key, self.env)
                elif key in self.env:
                    value = self.env[key]
                    if _not_utf8(value):
                        raise ConfigError(f"{key} is not valid UTF-8 text", f"set {key} again as plain UTF-8 text")
                    document[key] = value if rules.get("type") == "string" else _yaml_scalar(value)
                    if rules.get("type") == "integer" and isinstance(document[key], bool):
                        document[key] = value  # YAML's true is not a number: let the type check name it
            if not self.validator.validate(document):
                raise ConfigError(_describe(self.validator.errors, self.schema))
            return dict(self.validator.document)

        def enable_debug_log_level(self) -> None:  # the entry point owns logging
            return None

    variables: dict[str, Any] = SchemaPipe(schema=schema, env=env, check_for_newer_version=False).variables
    return variables


def _array(name: str, env: Mapping[str, str]) -> list[str | None]:
    """A list variable. Bitbucket passes a YAML list as ``NAME_COUNT`` + ``NAME_0``…; a single value
    (``TAGS: 'release'``) arrives as ``NAME`` alone and is a one-item list, or a JSON list (``'["a", "b"]'``)."""
    count = env.get(f"{name}_COUNT")
    if count is None:
        return _scalar_list(name, env.get(name))
    if not count.isdigit() or int(count) > 1000:
        raise ConfigError(f"{name}_COUNT must be a small whole number", f"set {name} as a YAML list")
    from bitbucket_pipes_toolkit import ArrayVariable

    return list(ArrayVariable(name, env))  # Cerberus rebuilds sequences, so hand it a plain list


def _scalar_list(name: str, value: str | None) -> list[str | None]:
    text = (value or "").strip()
    if not text:
        return []
    if not text.startswith("["):
        return [text]
    try:
        items = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ConfigError(
            f"{name} starts with [ but is not a JSON list", f"set {name} as a YAML list, e.g. {name}: ['a', 'b']"
        ) from None
    if not isinstance(items, list) or len(items) > 1000:
        raise ConfigError(f"{name} is not a JSON list of at most 1000 items", f"set {name} as a YAML list")
    # An object (a DEPLOYMENTS entry with its own parameters) goes on as the JSON text a YAML list would give.
    return [item if isinstance(item, str) else json.dumps(item) for item in items]


def _not_utf8(text: str) -> bool:
    """os.environ keeps bytes that are not UTF-8 as lone surrogates, which cannot be sent anywhere."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _yaml_scalar(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value  # left as text: the type check then names the variable


def _describe(errors: dict[str, list[Any]], schema: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for name in sorted(errors):
        reasons = "; ".join(_flatten(errors[name]))
        hint = schema.get(name, {}).get("meta", {}).get("hint")
        parts.append(f"{name}: {reasons}" + (f" ({hint})" if hint else ""))
    return "Invalid variable " + " | ".join(parts)


def _flatten(reasons: list[Any]) -> list[str]:
    out: list[str] = []
    for reason in reasons:
        if isinstance(reason, dict):
            for index, inner in reason.items():
                out.extend(f"item {index} {text}" for text in _flatten(inner))
        else:
            out.append(_without_value(str(reason)))
    return out


def _without_value(reason: str) -> str:
    """Cerberus quotes the offending value ('unallowed value X'): the value may be a credential
    pasted into the wrong variable, or carry line breaks, so it is never echoed."""
    if reason.startswith("unallowed value"):
        return "value is not allowed"
    return _CONTROL.sub("?", reason)


def debug_requested(env: Mapping[str, str] | None = None) -> bool:
    """DEBUG as the schema reads it (YAML: true/True/yes/on), before the schema has run."""
    value = (os.environ if env is None else env).get("DEBUG", "")
    return _yaml_scalar(value) is True


def load(env: Mapping[str, str] | None = None, schema: Mapping[str, dict[str, Any]] | None = None) -> Config:
    """Validate ``env`` (by default the process environment) into a :class:`Config`."""
    env = dict(os.environ if env is None else env)
    schema = dict(schema or SCHEMA)
    # Mask credentials from the start: a validation message must not be able to show one.
    register(*(value for name, value in env.items() if looks_secret(name)))
    variables = _validate(schema, env)

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
        build=_build(env),
        identity=identity.load(variables, env),
        report=ReportSettings.load(variables),
        deploy=DeploySettings(
            clone_dir=_clone_dir(env),
            prefect_file=str(variables.get("PREFECT_FILE") or DEFAULT_PREFECT_FILE),
            environment=env,
        ),
        outputs=OutputSettings(
            shared_dir=env.get("BITBUCKET_PIPE_SHARED_STORAGE_DIR") or None,
            variables_path=env.get("BITBUCKET_PIPELINES_VARIABLES_PATH") or None,
        ),
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


def parse_api_url(value: str) -> str:
    url = parse_http_url("PREFECT_API_URL", value).rstrip("/")
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ConfigError(
            "PREFECT_API_URL must not have a query (?...) or fragment (#...)",
            "use the bare API URL; pass credentials in PREFECT_API_KEY or PREFECT_API_AUTH_STRING",
        )
    if parts.hostname == "app.prefect.cloud":
        raise ConfigError(
            "PREFECT_API_URL points at the Prefect UI (app.prefect.cloud), not the API",
            "use https://api.prefect.cloud/api/accounts/<account id>/workspaces/<workspace id>",
        )
    return url


def parse_deployment(text: str) -> DeploymentRef:
    text = text.strip()
    fix = "set DEPLOYMENT to 'flow-name/deployment-name' (see 'prefect deployment ls') or a deployment id"
    if _CONTROL.search(text) or len(text) > 512:
        raise ConfigError("DEPLOYMENT contains control characters or is too long", fix)
    if "/" not in text:
        try:
            return DeploymentRef(text=text, id=uuid.UUID(text))
        except ValueError:
            raise ConfigError(
                f"DEPLOYMENT {text!r} is neither 'flow-name/deployment-name' nor a deployment id", fix
            ) from None
    flow, _, name = text.partition("/")
    if not flow.strip() or not name.strip() or _BANNED_NAME_CHARS & set(name) or _BANNED_NAME_CHARS & set(flow):
        raise ConfigError(f"DEPLOYMENT {text!r} is not of the form 'flow-name/deployment-name'", fix)
    return DeploymentRef(text=f"{flow}/{name}")


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _not_utf8(value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def parse_targets(entries: list[str | None], parse: Callable[[str], DeploymentRef] = parse_deployment) -> list[Target]:
    """DEPLOYMENTS entries: a name or id, or a JSON object ``{"deployment": ..., "parameters": {...}}``."""
    if len(entries) > MAX_TARGETS:
        raise ConfigError(
            f"DEPLOYMENTS has {len(entries)} entries", f"run at most {MAX_TARGETS} deployments in one step"
        )
    targets: list[Target] = []
    for index, entry in enumerate(entries):
        name = f"DEPLOYMENTS item {index}"
        text = (entry or "").strip()
        if not text:
            raise ConfigError(f"{name} is empty", "remove it or name a deployment")
        if text.startswith("{"):
            spec = parse_json_object(name, text) or {}
            unknown = sorted(set(spec) - {"deployment", "parameters"})
            if unknown or not isinstance(spec.get("deployment"), str):
                raise ConfigError(
                    f"{name} must have a 'deployment' name and optionally 'parameters' (got keys {sorted(spec)})",
                    'use {"deployment": "flow/deployment", "parameters": {...}}',
                )
            parameters = spec.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise ConfigError(
                    f"{name} has 'parameters' that are not a JSON object", 'use "parameters": {"name": value}'
                )
            targets.append(Target(_named(name, spec["deployment"], parse), parameters, source=name))
        else:
            targets.append(Target(_named(name, text, parse), source=name))
    labels = [t.label for t in targets]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"DEPLOYMENTS names {', '.join(duplicates)} more than once", "list each deployment once")
    return targets


def _named(variable: str, text: str, parse: Callable[[str], DeploymentRef] = parse_deployment) -> DeploymentRef:
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(exc.message.replace("DEPLOYMENT ", f"{variable} ", 1), exc.fix) from None


def parse_deployment_selection(text: str) -> DeploymentRef:
    """ACTION=deploy / deploy-and-run select deployments of the prefect.yaml by name: 'flow/deployment',
    a bare deployment name, or a glob of either ('etl/*', '*/prod', 'etl-*'). Not an id."""
    text = text.strip()
    fix = (
        "set DEPLOYMENT to 'flow-name/deployment-name', a deployment name or a glob such as 'etl/*'"
        " (unset: every deployment of the prefect.yaml)"
    )
    if _CONTROL.search(text) or len(text) > 512:
        raise ConfigError("DEPLOYMENT contains control characters or is too long", fix)
    flow, slash, name = text.partition("/")
    if not text or (slash and (not flow.strip() or not name.strip() or "/" in name)) or set("%&><") & set(text):
        raise ConfigError(f"DEPLOYMENT {text!r} is not a deployment name or glob", fix)
    return DeploymentRef(text=text)


def parse_json_object(name: str, text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    if _not_utf8(text):
        raise ConfigError(f"{name} is not valid UTF-8 text", f"set {name} again as plain UTF-8 JSON")
    if len(text.encode()) > MAX_JSON_BYTES:
        raise ConfigError(
            f"{name} is larger than {MAX_JSON_BYTES // 1024} KiB", "pass large inputs by reference (a path or URL)"
        )
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(
            f"{name} is not valid JSON: {detail}{where}", f'set {name} to a JSON object such as \'{{"key": "value"}}\''
        ) from None
    if _has_surrogate(value):
        raise ConfigError(
            f"{name} contains an escaped lone surrogate (\\ud800-\\udfff), which is not valid Unicode",
            "remove it or escape the full character",
        )
    if not isinstance(value, dict):
        raise ConfigError(
            f"{name} must be a JSON object, got a JSON {type(value).__name__}",
            'wrap the values in {...} with names, e.g. \'{"key": "value"}\'',
        )
    return value


def parse_tags(tags: list[str]) -> list[str]:
    clean = []
    for index, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag.strip():
            raise ConfigError(f"TAGS item {index} is empty", "remove it or give it a value")
        if _CONTROL.search(tag) or len(tag) > 200:
            raise ConfigError(
                f"TAGS item {index} has control characters or is longer than 200 characters", "use short plain tags"
            )
        clean.append(tag.strip())
    return clean


def parse_text(name: str, value: str | None, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    if _CONTROL.search(value) or len(value) > limit:
        raise ConfigError(
            f"{name} has control characters or is longer than {limit} characters", f"shorten {name} to plain text"
        )
    return value.strip()


def parse_name(name: str, value: str | None) -> str | None:
    text = parse_text(name, value, limit=200)
    if text and _BANNED_NAME_CHARS & set(text):
        raise ConfigError(
            f"{name} contains one of / % & > <", f"Prefect names cannot contain them; rename or fix {name}"
        )
    return text
