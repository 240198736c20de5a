"""The reporter's small parts: its variables in the pipe's schema, the build context, ids and text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipe.bitbucket import fields
from pipe.bitbucket.variables import DEFAULT_API_URL, DEFAULT_PIPELINES_PROXY, VARIABLES
from pipe.build import Build
from pipe.durations import format_duration
from pipe.errors import ConfigError
from tests.bitbucket.conftest import BUILD_ENV, validated

PIPE_ENV = {"PREFECT_API_URL": "https://prefect.example.com/api", "DEPLOYMENT": "greet/ci"}


def test_defaults() -> None:
    values = validated()
    assert values["REPORT"] is True
    assert values["BITBUCKET_API_URL"] == DEFAULT_API_URL == "https://api.bitbucket.org/2.0"
    assert values["BITBUCKET_PIPELINES_PROXY"] == DEFAULT_PIPELINES_PROXY


def test_every_variable_has_a_hint() -> None:
    assert all(rules["meta"]["hint"] for rules in VARIABLES.values())


def test_the_pipe_schema_validates_the_reporter_variables() -> None:
    from pipe import config

    loaded = config.load({**PIPE_ENV, "REPORT": "false", "BITBUCKET_ACCESS_TOKEN": "t0ken-value"})
    assert loaded.report.enabled is False
    assert loaded.report.auth.auth is not None and loaded.report.auth.auth.header() == "Bearer t0ken-value"
    assert loaded.report.api_url == DEFAULT_API_URL


@pytest.mark.parametrize(
    "url", ["https://user:secret@api.bitbucket.org/2.0", "ftp://api.bitbucket.org", "api.bitbucket.org/2.0", ""]
)
def test_a_bad_api_url_is_a_config_error_naming_the_variable(url: str) -> None:
    from pipe import config

    with pytest.raises(ConfigError, match="BITBUCKET_API_URL"):
        config.load({**PIPE_ENV, "BITBUCKET_API_URL": url})


def test_build_context_of_a_pull_request() -> None:
    build = Build.from_env({**BUILD_ENV, "BITBUCKET_PR_ID": "17", "BITBUCKET_BRANCH": "feature/x"})
    assert build.reportable
    assert build.refname == "feature/x"
    assert build.commit_path == f"/repositories/acme/data-pipelines/commit/{BUILD_ENV['BITBUCKET_COMMIT']}"
    assert build.results_url == "https://bitbucket.org/acme/data-pipelines/pipelines/results/42"


def test_build_context_refuses_what_is_not_a_bitbucket_build() -> None:
    assert not Build.from_env({}).reportable
    assert not Build.from_env({**BUILD_ENV, "BITBUCKET_COMMIT": "not-a-sha"}).reportable
    assert not Build.from_env({**BUILD_ENV, "BITBUCKET_REPO_SLUG": "../other"}).reportable
    only_full_name = {k: v for k, v in BUILD_ENV.items() if k not in ("BITBUCKET_WORKSPACE", "BITBUCKET_REPO_OWNER")}
    only_full_name.pop("BITBUCKET_REPO_SLUG")
    build = Build.from_env(only_full_name)
    assert build.reportable and (build.workspace, build.repo_slug) == ("acme", "data-pipelines")


def test_stable_id_fits_is_deterministic_and_tells_similar_names_apart() -> None:
    long_name = "a" * 200 + "/" + "b" * 200
    assert len(fields.stable_id("prefect", long_name, 40)) <= 40
    assert fields.stable_id("prefect", "greet/ci", 40) == fields.stable_id("prefect", "greet/ci", 40)
    assert fields.stable_id("prefect", "a-b/c", 40) != fields.stable_id("prefect", "a/b-c", 40)
    assert fields.stable_id("prefect", long_name + "x", 40) != fields.stable_id("prefect", long_name + "y", 40)


def test_clip() -> None:
    assert fields.clip("short", 10) == "short"
    assert fields.clip("one\ntwo   three", 50) == "one two three"
    clipped = fields.clip("x" * 100, 10)
    assert len(clipped) == 10 and clipped.endswith("…")


def test_http_url_is_never_cut() -> None:
    assert fields.http_url("https://e.com/run", 450) == "https://e.com/run"
    assert fields.http_url("https://e.com/" + "x" * 500, 450) is None
    assert fields.http_url("javascript:alert(1)", 450) is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, ""), (0.25, "250ms"), (12.3, "12s"), (185, "3m 05s"), (3725, "1h 02m")]
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_variables_import_leaves_the_reporter_unloaded() -> None:
    code = (
        "import sys, pipe.bitbucket.variables; "
        "assert 'pipe.bitbucket.reporter' not in sys.modules; "
        "from pipe.bitbucket import Reporter; "
        "assert Reporter.__module__ == 'pipe.bitbucket.reporter'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
