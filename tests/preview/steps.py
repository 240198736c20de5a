"""The steps of the preview tests: the pipe run in a test repository's clone as a pull-request build
(ACTION=preview) or a build of main (ACTION=cleanup-previews) of a repository of its own, and the
Bitbucket stand-in's answers about pull requests."""

from __future__ import annotations

import uuid

from tests.bitbucket.standin import BitbucketStandIn
from tests.deploy.repo import Repo, deploy_env
from tests.support.pipe import ROOT, PipeResult, run_pipe

TOKEN = "bbat-preview-T0ken-0a1b2c3d4e5f"
BRANCH = "feature/new-etl"


def repository() -> str:
    return f"acme/repo-{uuid.uuid4().hex[:8]}"


def step(pipe_env: dict[str, str], repo: Repo, sha: str, full_name: str, **extra: str) -> PipeResult:
    """The pipe in the clone of ``repo`` at ``sha``, as a step of ``full_name``'s pipeline."""
    workspace, slug = full_name.split("/")
    env = deploy_env(
        pipe_env,
        repo,
        sha,
        BITBUCKET_REPO_FULL_NAME=full_name,
        BITBUCKET_WORKSPACE=workspace,
        BITBUCKET_REPO_SLUG=slug,
        BITBUCKET_REPO_OWNER=workspace,
        **extra,
    )
    return run_pipe({**env, "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1"}, cwd=repo.path)


def preview(pipe_env: dict[str, str], repo: Repo, sha: str, full_name: str, pr: int, **extra: str) -> PipeResult:
    pull_request = {
        "ACTION": "preview",
        "BITBUCKET_PR_ID": str(pr),
        "BITBUCKET_BRANCH": BRANCH,
        "BITBUCKET_PR_DESTINATION_BRANCH": "main",
    }
    return step(pipe_env, repo, sha, full_name, **{**pull_request, **extra})


def cleanup(
    pipe_env: dict[str, str], repo: Repo, full_name: str, bitbucket: BitbucketStandIn | None, **extra: str
) -> PipeResult:
    credential = {"BITBUCKET_ACCESS_TOKEN": TOKEN, "BITBUCKET_API_URL": bitbucket.api_url} if bitbucket else {}
    sha = repo.git("rev-parse", "HEAD")
    return step(
        pipe_env, repo, sha, full_name, ACTION="cleanup-previews", BITBUCKET_BRANCH="main", **credential, **extra
    )


def set_states(bitbucket: BitbucketStandIn, full_name: str, states: dict[int, str]) -> None:
    workspace, slug = full_name.split("/")
    for pr, state in states.items():
        bitbucket.pull_requests[(workspace, slug, pr)] = state
