"""Parameters: commit values go only where declared, the user's win, bad ones are refused."""

from __future__ import annotations

import pytest

from pipe import parameters
from pipe.errors import ParameterError

SCHEMA = {
    "type": "object",
    "title": "Parameters",
    "properties": {
        "name": {"type": "string", "default": "world", "title": "name", "position": 0},
        "count": {"type": "integer", "default": 2, "title": "count", "position": 1},
        "commit_sha": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "position": 2},
        "build_number": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "position": 3},
    },
}
OFFERED = {"commit_sha": "abc123", "build_number": "42", "branch": "main", "tag": None}


def test_commit_values_only_for_declared_parameters() -> None:
    values = parameters.commit_values(SCHEMA, OFFERED)
    assert values == {"commit_sha": "abc123", "build_number": 42}


def test_user_parameters_win() -> None:
    commit = parameters.commit_values(SCHEMA, OFFERED)
    resolved = parameters.resolve(SCHEMA, {"name": "world"}, {"commit_sha": "mine"}, commit)
    assert resolved["commit_sha"] == "mine" and resolved["build_number"] == 42


def test_unknown_names_are_refused_with_the_accepted_list() -> None:
    with pytest.raises(ParameterError) as caught:
        parameters.resolve(SCHEMA, {}, {"nme": "x"}, {})
    message = str(caught.value)
    assert "'nme'" in message and "count" in message and "name" in message


def test_type_errors_name_the_parameter() -> None:
    with pytest.raises(ParameterError) as caught:
        parameters.resolve(SCHEMA, {}, {"count": "three"}, {})
    assert "'count'" in str(caught.value) and "integer" in str(caught.value)


def test_required_parameter_without_default() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with pytest.raises(ParameterError) as caught:
        parameters.resolve(schema, {}, {}, {})
    assert "'n'" in str(caught.value)


def test_no_schema_means_no_checks() -> None:
    assert parameters.resolve(None, None, {"anything": 1}, {}) == {"anything": 1}
