"""Resolve the parameters of a run and check them against the deployment's schema before anything
is created (the server accepts unknown names, and the run crashes later in the worker)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipe.errors import ParameterError


def declared(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((schema or {}).get("properties") or {})


def commit_values(schema: Mapping[str, Any] | None, offered: Mapping[str, Any]) -> dict[str, Any]:
    """The commit values whose names the flow declares, shaped to the declared type.

    ``None`` is never sent (the flow's default stays), and numbers arrive as numbers when the
    flow declares an integer (``build_number: int``) and as text when it declares a string.
    """
    properties = declared(schema)
    values: dict[str, Any] = {}
    for name, value in offered.items():
        if value is None or name not in properties:
            continue
        values[name] = _shape(value, properties[name])
    return values


def _types(prop: Mapping[str, Any]) -> set[str]:
    types: set[str] = set()
    if isinstance(prop.get("type"), str):
        types.add(prop["type"])
    elif isinstance(prop.get("type"), list):
        types.update(prop["type"])
    for option in prop.get("anyOf", []) + prop.get("oneOf", []) + prop.get("allOf", []):
        if isinstance(option, Mapping):
            types |= _types(option)
    return types


def _shape(value: Any, prop: Mapping[str, Any]) -> Any:
    types = _types(prop)
    if isinstance(value, str) and "integer" in types and "string" not in types and value.isdigit():
        return int(value)
    return value


def resolve(
    schema: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None,
    user: Mapping[str, Any],
    commit: Mapping[str, Any],
) -> dict[str, Any]:
    """What to send: commit values first, the user's PARAMETERS over them. Raises
    :class:`ParameterError` for names the flow does not declare and values of the wrong type."""
    properties = declared(schema)
    if schema and properties is not None:
        unknown = sorted(set(user) - set(properties))
        if unknown:
            accepted = _some(sorted(properties)) or "none"
            raise ParameterError(
                f"PARAMETERS names {_some([repr(name) for name in unknown])}, which the flow does not declare",
                f"accepted parameters: {accepted}",
            )
    parameters = {**commit, **user}
    if schema:
        _check_types(schema, {**dict(defaults or {}), **parameters})
    return parameters


def _some(names: list[str], limit: int = 10) -> str:
    """A list for one line: the first few, then how many more."""
    shown = [name if len(name) <= 60 else name[:57] + "..." for name in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown) + more


def _check_types(schema: Mapping[str, Any], merged: Mapping[str, Any]) -> None:
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    try:
        errors = validate(dict(merged), dict(schema), raise_on_error=False, ignore_required=False)
    except ValidationError as exc:  # the schema itself is broken
        raise ParameterError(
            f"the deployment's parameter schema cannot be checked: {exc}", "re-deploy the flow"
        ) from None
    if errors:
        raise ParameterError(f"PARAMETERS do not match the flow's parameters: {_explain(errors)}", _fix(schema))


def _explain(errors: list[Any]) -> str:
    from jsonschema.exceptions import best_match

    best = best_match(errors)
    path = ".".join(str(p) for p in best.absolute_path)
    if best.validator == "required":
        return str(best.message).replace("is a required property", "is required and has no default")
    value = repr(best.instance)
    if len(value) > 60:
        value = value[:57] + "..."
    expected = best.schema.get("type") or best.validator
    return f"'{path}' got {value}, expected {expected}"


def _fix(schema: Mapping[str, Any]) -> str:
    parts = []
    for name, prop in declared(schema).items():
        kind = "/".join(sorted(_types(prop))) or "any"
        parts.append(f"{name} ({kind})")
    return "the flow accepts: " + _some(parts) if parts else "the flow declares no parameters"
