"""The build (commit, repository, pipeline, step) from Bitbucket's variables."""

from __future__ import annotations

from pipe.build import Build
from tests.support.pipe import BITBUCKET_ENV


def test_push_build() -> None:
    meta = Build.from_env(BITBUCKET_ENV)
    assert meta.commit_sha == BITBUCKET_ENV["BITBUCKET_COMMIT"]
    assert meta.repository == "acme/data-pipelines"
    assert meta.short_sha == "0f3c1e2"
    assert "commit:0f3c1e2" in meta.tags() and "branch:main" in meta.tags() and "build:42" in meta.tags()
    assert meta.pipeline_url is not None and meta.pipeline_url.startswith(
        "https://bitbucket.org/acme/data-pipelines/pipelines/results/42"
    )
    assert meta.default_run_name() == "data-pipelines-build-42-main-0f3c1e2"
    assert meta.labels()["bitbucket.commit"] == meta.commit_sha


def test_tag_and_pull_request_builds() -> None:
    tag = Build.from_env({**BITBUCKET_ENV, "BITBUCKET_BRANCH": "", "BITBUCKET_TAG": "v1.2.0"})
    assert tag.branch is None and tag.tag == "v1.2.0" and "tag:v1.2.0" in tag.tags()
    pr = Build.from_env({**BITBUCKET_ENV, "BITBUCKET_PR_ID": "17", "BITBUCKET_BRANCH": "feature/x"})
    assert pr.pull_request_id == "17" and "pr:17" in pr.tags()
    assert pr.parameters()["pull_request_id"] == "17"


def test_outside_pipelines() -> None:
    meta = Build.from_env({})
    assert not meta.in_pipelines and not meta.reportable
    assert meta.tags() == [] and meta.default_run_name() is None and meta.labels() == {}


def test_parameters_carry_the_whole_object() -> None:
    meta = Build.from_env(BITBUCKET_ENV)
    params = meta.parameters()
    assert params["bitbucket"]["repository"] == "acme/data-pipelines"
    assert set(params) == {
        "commit_sha",
        "branch",
        "tag",
        "repository",
        "build_number",
        "pull_request_id",
        "pipeline_url",
        "deployment_environment",
        "bitbucket",
    }
