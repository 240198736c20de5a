"""The preview variables, checked by pipe.config.load against the action and the build."""

from __future__ import annotations

import pytest

from pipe import config
from pipe.errors import ConfigError

TOKEN = "bbtok-preview-settings-0123456789abcdef"
BASE = {
    "PREFECT_API_URL": "https://prefect.example.com/api",
    "BITBUCKET_COMMIT": "0f3c1e2d4b5a69788796a5b4c3d2e1f00f1e2d3c",
    "BITBUCKET_BRANCH": "feature/x",
    "BITBUCKET_REPO_FULL_NAME": "acme/repo",
    "BITBUCKET_WORKSPACE": "acme",
    "BITBUCKET_REPO_SLUG": "repo",
    "BITBUCKET_BUILD_NUMBER": "3",
    "REPORT": "false",
}
PREVIEW = {**BASE, "ACTION": "preview", "BITBUCKET_PR_ID": "7"}
CLEANUP = {**BASE, "ACTION": "cleanup-previews"}


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(env)
    return str(caught.value)


def test_preview_defaults() -> None:
    loaded = config.load(PREVIEW)
    assert loaded.action == "preview"
    assert loaded.preview.name_template == "{deployment}-pr-{pr}"
    assert loaded.preview.run is False and loaded.preview.ttl_days is None
    assert loaded.preview.work_pool_name is None
    assert loaded.build.pull_request_id == "7"


def test_preview_variables_are_read() -> None:
    loaded = config.load(
        {**PREVIEW, "PREVIEW_NAME": "pr-{pr}-{deployment}", "PREVIEW_RUN": "true", "WORK_POOL_NAME": "staging"}
    )
    assert loaded.preview.name_template == "pr-{pr}-{deployment}"
    assert loaded.preview.run is True
    assert loaded.preview.work_pool_name == "staging"


def test_preview_needs_a_pull_request_build() -> None:
    env = {k: v for k, v in PREVIEW.items() if k != "BITBUCKET_PR_ID"}
    message = refused(env)
    assert "pull-requests" in message and "BITBUCKET_PR_ID" in message


@pytest.mark.parametrize("pr", ["abc", "7a", "-7"])
def test_pull_request_id_must_be_digits(pr: str) -> None:
    assert "BITBUCKET_PR_ID" in refused({**PREVIEW, "BITBUCKET_PR_ID": pr})


def test_bad_preview_name_is_refused_at_load() -> None:
    assert "PREVIEW_NAME" in refused({**PREVIEW, "PREVIEW_NAME": "{deployment}-{user}"})


def test_cleanup_needs_a_credential_or_a_ttl() -> None:
    message = refused(CLEANUP)
    assert "BITBUCKET_ACCESS_TOKEN" in message and "PREVIEW_TTL_DAYS" in message


def test_cleanup_with_an_access_token() -> None:
    loaded = config.load({**CLEANUP, "BITBUCKET_ACCESS_TOKEN": TOKEN})
    assert loaded.report.auth.auth is not None
    assert loaded.preview.ttl_days is None


def test_cleanup_with_a_ttl_alone() -> None:
    loaded = config.load({**CLEANUP, "PREVIEW_TTL_DAYS": "14"})
    assert loaded.preview.ttl_days == 14
    assert loaded.report.auth.auth is None


@pytest.mark.parametrize("ttl", ["0", "abc", "-1", "3651", "1.5", "true"])
def test_bad_ttl_names_the_variable(ttl: str) -> None:
    assert "PREVIEW_TTL_DAYS" in refused({**CLEANUP, "PREVIEW_TTL_DAYS": ttl})


def test_half_a_credential_says_what_is_missing() -> None:
    message = refused({**CLEANUP, "ATLASSIAN_ACCOUNT_EMAIL": "dev@example.com"})
    assert "ATLASSIAN_ACCOUNT_EMAIL is set without ATLASSIAN_API_TOKEN" in message


def test_cleanup_needs_the_repository() -> None:
    env = {
        "PREFECT_API_URL": BASE["PREFECT_API_URL"],
        "BITBUCKET_COMMIT": BASE["BITBUCKET_COMMIT"],
        "ACTION": "cleanup-previews",
        "PREVIEW_TTL_DAYS": "14",
        "REPORT": "false",
    }
    assert "BITBUCKET_REPO_FULL_NAME" in refused(env)


def test_preview_run_with_action_run_is_refused() -> None:
    message = refused({**BASE, "DEPLOYMENT": "etl/prod", "PREVIEW_RUN": "true"})
    assert "PREVIEW_RUN" in message and "ACTION=run" in message


def test_preview_run_false_with_action_run_is_fine() -> None:
    assert config.load({**BASE, "DEPLOYMENT": "etl/prod", "PREVIEW_RUN": "false"}).preview.run is False


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({**BASE, "ACTION": "deploy", "WORK_POOL_NAME": "staging"}, "WORK_POOL_NAME"),
        ({**BASE, "ACTION": "deploy", "PREVIEW_NAME": "pr-{pr}"}, "PREVIEW_NAME"),
        ({**BASE, "DEPLOYMENT": "etl/prod", "PREVIEW_TTL_DAYS": "14"}, "PREVIEW_TTL_DAYS"),
        ({**PREVIEW, "PREVIEW_TTL_DAYS": "14"}, "PREVIEW_TTL_DAYS"),
        ({**CLEANUP, "PREVIEW_TTL_DAYS": "14", "PREVIEW_RUN": "true"}, "PREVIEW_RUN"),
        ({**CLEANUP, "PREVIEW_TTL_DAYS": "14", "WORK_POOL_NAME": "staging"}, "WORK_POOL_NAME"),
        ({**CLEANUP, "PREVIEW_TTL_DAYS": "14", "DEPLOYMENT": "etl/prod"}, "DEPLOYMENT"),
        ({**CLEANUP, "PREVIEW_TTL_DAYS": "14", "DEPLOYMENTS_COUNT": "1", "DEPLOYMENTS_0": "etl/prod"}, "DEPLOYMENTS"),
        ({**CLEANUP, "PREVIEW_TTL_DAYS": "14", "DEPLOYMENTS": "etl/prod"}, "DEPLOYMENTS"),
    ],
)
def test_variables_of_other_actions_are_refused(env: dict[str, str], name: str) -> None:
    assert name in refused(env)


def test_preview_pool_name_is_checked() -> None:
    assert "WORK_POOL_NAME" in refused({**PREVIEW, "WORK_POOL_NAME": "a/b"})


def test_deployments_entry_with_parameters_is_refused_for_preview() -> None:
    message = refused({**PREVIEW, "DEPLOYMENTS": '[{"deployment": "a/b", "parameters": {"n": 1}}]'})
    assert "PARAMETERS" in message


def test_deployments_without_parameters_are_fine_for_preview() -> None:
    loaded = config.load({**PREVIEW, "DEPLOYMENTS": '["a/b", "c/*"]'})
    assert len(loaded.targets) == 2


@pytest.mark.parametrize(
    "extra",
    [
        {"ATLASSIAN_API_TOKEN": TOKEN},  # half a credential, no TTL
        {"BITBUCKET_APP_PASSWORD": TOKEN},
        {"PREVIEW_TTL_DAYS": TOKEN},  # pasted into the wrong variable
        {"BITBUCKET_ACCESS_TOKEN": TOKEN, "DEPLOYMENT": "etl/prod"},
        {"BITBUCKET_ACCESS_TOKEN": TOKEN, "PREVIEW_RUN": "true"},
    ],
)
def test_errors_never_show_the_token(extra: dict[str, str]) -> None:
    message = refused({**CLEANUP, **extra})
    assert TOKEN not in message
    assert TOKEN[:12] not in message
