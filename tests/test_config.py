"""Configuration: every variable is validated into one clear line before anything happens."""

from __future__ import annotations

import pytest

from pipe import config, urls
from pipe.errors import ConfigError

BASE = {"PREFECT_API_URL": "https://prefect.example.com/api", "DEPLOYMENT": "etl/prod"}


def load(**extra: str) -> config.Config:
    return config.load({**BASE, **extra})


def test_defaults() -> None:
    cfg = load()
    assert cfg.action == "run"
    assert cfg.wait is True and cfg.stream_logs is True and cfg.commit_parameters is True
    assert cfg.timeout == 3600 and cfg.cancel_on_timeout is True and cfg.dry_run is False
    assert cfg.targets == [config.Target(config.DeploymentRef(text="etl/prod"))]
    assert cfg.parameters == {} and cfg.job_variables is None and cfg.tags == []


def test_values_are_typed() -> None:
    cfg = load(
        WAIT="false",
        TIMEOUT="90",
        PARAMETERS='{"n": 3, "name": "x"}',
        JOB_VARIABLES='{"env": {"A": "1"}}',
        TAGS_COUNT="2",
        TAGS_0="etl",
        TAGS_1="nightly",
        DEPLOYMENT="4b9f4d55-0f3a-4d86-9d2c-7d3d4cb5b2a1",
    )
    assert cfg.wait is False and cfg.timeout == 90
    assert cfg.parameters == {"n": 3, "name": "x"}
    assert cfg.job_variables == {"env": {"A": "1"}}
    assert cfg.tags == ["etl", "nightly"]
    assert [t.ref.is_id for t in cfg.targets] == [True]


def test_secrets_are_redacted_in_repr() -> None:
    cfg = load(PREFECT_API_KEY="pnu_abcdefghijklmnopqrstuvwxyz0123456789")
    assert "pnu_abc" not in repr(cfg)
    assert "pnu_abc" not in str(cfg.api_key)
    assert cfg.api_key is not None and cfg.api_key.reveal().startswith("pnu_")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PREFECT_API_URL": ""}, "PREFECT_API_URL"),
        ({"DEPLOYMENT": ""}, "DEPLOYMENT"),
        ({"TIMEOUT": "abc"}, "TIMEOUT"),
        ({"TIMEOUT": "0"}, "TIMEOUT"),
        ({"TIMEOUT": "a: b: c"}, "TIMEOUT"),
        ({"WAIT": "maybe"}, "WAIT"),
        ({"ACTION": "explode"}, "ACTION"),
        ({"PARAMETERS": "{not json"}, "PARAMETERS"),
        ({"PARAMETERS": "[1, 2]"}, "PARAMETERS"),
        ({"JOB_VARIABLES": '"text"'}, "JOB_VARIABLES"),
        ({"DEPLOYMENT": "no-slash-not-uuid"}, "DEPLOYMENT"),
        ({"DEPLOYMENT": "/dep"}, "DEPLOYMENT"),
        ({"DEPLOYMENT": "flow/"}, "DEPLOYMENT"),
        ({"DEPLOYMENT": "fl%ow/dep"}, "DEPLOYMENT"),
        ({"PREFECT_API_URL": "ftp://prefect.example.com/api"}, "PREFECT_API_URL"),
        ({"PREFECT_API_URL": "https://user:pw@prefect.example.com/api"}, "PREFECT_API_URL"),
        ({"PREFECT_API_URL": "https://app.prefect.cloud/account/a/workspace/w"}, "PREFECT_API_URL"),
        ({"PREFECT_API_KEY": "pnu_x1234567", "PREFECT_API_AUTH_STRING": "u:p12345"}, "PREFECT_API_KEY"),
        ({"PREFECT_API_AUTH_STRING": "no-colon-here"}, "PREFECT_API_AUTH_STRING"),
        ({"TAGS_COUNT": "1", "TAGS_0": "bad\ttag"}, "TAGS"),
        ({"TAGS_COUNT": "x"}, "TAGS_COUNT"),
        ({"FLOW_RUN_NAME": "a\nb"}, "FLOW_RUN_NAME"),
        ({"WORK_QUEUE_NAME": "a/b"}, "WORK_QUEUE_NAME"),
    ],
)
def test_bad_input_names_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**env)
    line = str(caught.value)
    assert names in line
    assert "\n" not in line


def test_password_in_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load(PREFECT_API_URL="https://admin:hunter2hunter2@prefect.example.com/api")
    assert "hunter2" not in str(caught.value)


def test_loopback_detection() -> None:
    assert urls.is_loopback("127.0.0.1") and urls.is_loopback("localhost") and urls.is_loopback("::1")
    assert not urls.is_loopback("10.0.0.1") and not urls.is_loopback("prefect.example.com")


def test_only_config_reads_the_environment() -> None:
    """Config is the one typed input: every other module gets what it needs passed down."""
    import ast
    from pathlib import Path

    package = Path(config.__file__).parent
    readers = []
    for path in sorted(package.rglob("*.py")):
        if path == Path(config.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "putenv"):
                readers.append(f"{path.relative_to(package.parent)}:{node.lineno} os.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                names = {alias.name for alias in node.names} & {"environ", "environb", "getenv"}
                readers += [f"{path.relative_to(package.parent)}:{node.lineno} from os import {n}" for n in names]
    assert readers == []


@pytest.mark.parametrize(
    ("extra", "tags"),
    [
        ({"TAGS": "release"}, ["release"]),
        ({"TAGS": '["a", "b"]'}, ["a", "b"]),
        ({"TAGS": "  "}, []),
        ({"TAGS_COUNT": "1", "TAGS_0": "listed", "TAGS": "ignored"}, ["listed"]),
    ],
    ids=["scalar", "json-list", "blank", "yaml-list-wins"],
)
def test_a_single_value_where_a_list_is_expected_is_a_one_item_list(extra: dict[str, str], tags: list[str]) -> None:
    assert load(**extra).tags == tags


def test_a_single_deployments_value_runs_that_deployment() -> None:
    cfg = config.load({**BASE, "DEPLOYMENT": "", "DEPLOYMENTS": "etl/a"})
    assert [(t.ref.text, t.source) for t in cfg.targets] == [("etl/a", "DEPLOYMENTS item 0")]
    cfg = config.load(
        {**BASE, "DEPLOYMENT": "", "DEPLOYMENTS": '["etl/a", {"deployment": "etl/b", "parameters": {"n": 1}}]'}
    )
    assert [(t.ref.text, t.parameters) for t in cfg.targets] == [("etl/a", {}), ("etl/b", {"n": 1})]


def test_a_broken_json_list_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TAGS starts with \\[ but is not a JSON list"):
        load(TAGS="[release")
