"""The variables a user sets: the schema (README's Variables table mirrors it) and its validation.

Validation uses the bitbucket-pipes-toolkit ``Pipe`` (Cerberus); every problem becomes one
:class:`~pipe.errors.ConfigError` line that names the variable and the fix, never echoing a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from pipe.bitbucket.variables import VARIABLES as REPORT_VARIABLES
from pipe.errors import ConfigError
from pipe.identity.variables import VARIABLES as IDENTITY_VARIABLES
from pipe.preview.settings import MAX_TTL_DAYS
from pipe.urls import CONTROL
from pipe.values import ACTIONS, MAX_TIMEOUT, not_utf8


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
    "PREVIEW_NAME": _string("use a template with {pr}, e.g. '{deployment}-pr-{pr}' ({deployment}, {pr}, {branch})"),
    "PREVIEW_RUN": _boolean(False, "use true or false"),
    "PREVIEW_TTL_DAYS": {
        "type": "integer",
        "required": False,
        "nullable": True,
        "min": 1,
        "max": MAX_TTL_DAYS,
        "meta": {"hint": f"use a whole number of days between 1 and {MAX_TTL_DAYS}, e.g. '14'"},
    },
    "WORK_POOL_NAME": _string("use the name of a work pool, e.g. 'staging' (ACTION=preview only)"),
    "DRY_RUN": _boolean(False, "use true or false"),
    "STREAM_LOGS": _boolean(True, "use true or false"),
    "DEBUG": _boolean(False, "use true or false"),
    **IDENTITY_VARIABLES,
    **REPORT_VARIABLES,
}


def validate(schema: dict[str, dict[str, Any]], env: dict[str, str]) -> dict[str, Any]:
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
                    if not_utf8(value):
                        raise ConfigError(f"{key} is not valid UTF-8 text", f"set {key} again as plain UTF-8 text")
                    document[key] = value if rules.get("type") == "string" else yaml_scalar(value)
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


def yaml_scalar(value: str) -> Any:
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
    return CONTROL.sub("?", reason)
