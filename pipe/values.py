"""The values of the variables: each parsed and checked into what the pipe uses, one
:class:`~pipe.errors.ConfigError` line per problem, naming the variable and the fix."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipe.errors import ConfigError
from pipe.urls import CONTROL, parse_http_url

ACTIONS = ("run", "deploy", "deploy-and-run", "preview", "cleanup-previews")
DEPLOY_ACTIONS = ("deploy", "deploy-and-run", "preview")  # they run prefect deploy on the prefect.yaml
MAX_JSON_BYTES = 512 * 1024
MAX_TIMEOUT = 7 * 24 * 3600
MAX_TARGETS = 50
# Prefect refuses these in names (flows, deployments, work queues).
_BANNED_NAME_CHARS = set("/%&><")


def not_utf8(text: str) -> bool:
    """os.environ keeps bytes that are not UTF-8 as lone surrogates, which cannot be sent anywhere."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


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
    if CONTROL.search(text) or len(text) > 512:
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
        return not_utf8(value)
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
    if CONTROL.search(text) or len(text) > 512:
        raise ConfigError("DEPLOYMENT contains control characters or is too long", fix)
    flow, slash, name = text.partition("/")
    if not text or (slash and (not flow.strip() or not name.strip() or "/" in name)) or set("%&><") & set(text):
        raise ConfigError(f"DEPLOYMENT {text!r} is not a deployment name or glob", fix)
    return DeploymentRef(text=text)


def parse_json_object(name: str, text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    if not_utf8(text):
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
        if CONTROL.search(tag) or len(tag) > 200:
            raise ConfigError(
                f"TAGS item {index} has control characters or is longer than 200 characters", "use short plain tags"
            )
        clean.append(tag.strip())
    return clean


def parse_text(name: str, value: str | None, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    if CONTROL.search(value) or len(value) > limit:
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
