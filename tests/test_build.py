"""The build (commit, repository, pipeline, step) from Bitbucket's variables."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipe import config
from pipe.build import Build, from_checkout
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


def test_outside_pipelines_the_git_checkout_names_the_commit(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True, env=GIT_ENV
        ).stdout.strip()

    git("init", "-q", "-b", "feature/x")
    git("remote", "add", "origin", "git@bitbucket.org:acme/data-pipelines.git")
    (tmp_path / "flow.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    sha = git("rev-parse", "HEAD")

    build = from_checkout(tmp_path)
    assert build is not None
    assert (build.commit_sha, build.branch, build.repository) == (sha, "feature/x", "acme/data-pipelines")
    assert build.default_run_name() == f"data-pipelines-local-feature/x-{sha[:7]}"
    assert f"commit:{sha[:7]}" in build.tags() and "branch:feature/x" in build.tags()
    assert build.origin == f"the git checkout in {tmp_path}"

    git("pack-refs", "--all")  # refs in packed-refs, as after a gc
    assert (from_checkout(tmp_path) or Build()).commit_sha == sha

    loaded = config.load(
        {"PREFECT_API_URL": "http://127.0.0.1:4200/api", "DEPLOYMENT": "a/b", "BITBUCKET_CLONE_DIR": str(tmp_path)}
    )
    assert loaded.build.commit_sha == sha
    assert (
        config.load(
            {**BITBUCKET_ENV, "PREFECT_API_URL": "http://127.0.0.1:4200/api", "DEPLOYMENT": "a/b"}
        ).build.commit_sha
        == BITBUCKET_ENV["BITBUCKET_COMMIT"]
    )


def test_no_checkout_is_said_plainly(tmp_path: Path) -> None:
    assert from_checkout(tmp_path) is None
    assert Build().origin.startswith("nowhere")


GIT_ENV = {
    "PATH": "/usr/bin:/bin",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "HOME": "/tmp",
}
