"""The build: the commit, repository, pipeline and step being built, from Bitbucket's default variables.

Read once by :func:`pipe.config.load` and carried by :class:`~pipe.config.Config` to every place that
needs it: the run's parameters, tags and labels, the default run name, the idempotency key, the
deployment's tags and version, and the reports back to Bitbucket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

# What Bitbucket's own variables look like; anything else is not a Pipelines build a report can address.
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_SLUG = re.compile(r"^[\w.{}-]+$")


@dataclass(frozen=True)
class Build:
    commit_sha: str | None = None
    branch: str | None = None
    tag: str | None = None
    workspace: str | None = None
    repo_slug: str | None = None
    repository: str | None = None  # workspace/slug
    repository_uuid: str | None = None
    build_number: str | None = None
    pipeline_uuid: str | None = None
    step_uuid: str | None = None
    step_run_number: str | None = None
    pull_request_id: str | None = None
    pull_request_destination_branch: str | None = None
    deployment_environment: str | None = None
    in_pipelines: bool = False  # CI is set: the Pipelines auth proxy is there to use
    checkout: str | None = None  # outside Pipelines: the git checkout the values were read from

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Build:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        workspace = get("BITBUCKET_WORKSPACE") or get("BITBUCKET_REPO_OWNER")
        slug = get("BITBUCKET_REPO_SLUG")
        full_name = get("BITBUCKET_REPO_FULL_NAME")
        if (not workspace or not slug) and full_name and full_name.count("/") == 1:
            workspace, slug = (part.strip() or None for part in full_name.split("/"))
        return cls(
            commit_sha=get("BITBUCKET_COMMIT"),
            branch=get("BITBUCKET_BRANCH"),
            tag=get("BITBUCKET_TAG"),
            workspace=workspace,
            repo_slug=slug,
            repository=full_name or (f"{workspace}/{slug}" if workspace and slug else None),
            repository_uuid=get("BITBUCKET_REPO_UUID"),
            build_number=get("BITBUCKET_BUILD_NUMBER"),
            pipeline_uuid=get("BITBUCKET_PIPELINE_UUID"),
            step_uuid=get("BITBUCKET_STEP_UUID"),
            step_run_number=get("BITBUCKET_STEP_RUN_NUMBER"),
            pull_request_id=get("BITBUCKET_PR_ID"),
            pull_request_destination_branch=get("BITBUCKET_PR_DESTINATION_BRANCH"),
            deployment_environment=get("BITBUCKET_DEPLOYMENT_ENVIRONMENT"),
            in_pipelines=bool(env.get("CI")),
        )

    @property
    def origin(self) -> str:
        """Where these values came from, for the build log."""
        if self.checkout:
            return f"the git checkout in {self.checkout}"
        return "Bitbucket's variables" if self.commit_sha else "nowhere (no Bitbucket variables and no git checkout)"

    @property
    def short_sha(self) -> str | None:
        return self.commit_sha[:7] if self.commit_sha else None

    @property
    def pipeline_url(self) -> str | None:
        """The step's page in Bitbucket (the link back from a run)."""
        if not (self.repository and self.build_number):
            return None
        url = f"https://bitbucket.org/{self.repository}/pipelines/results/{self.build_number}"
        return f"{url}/steps/{self.step_uuid}" if self.step_uuid else url

    # -- what a run carries ----------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        """Values offered to flows that declare a parameter of the same name."""
        return {
            "commit_sha": self.commit_sha,
            "branch": self.branch,
            "tag": self.tag,
            "repository": self.repository,
            "build_number": self.build_number,
            "pull_request_id": self.pull_request_id,
            "pipeline_url": self.pipeline_url,
            "deployment_environment": self.deployment_environment,
            "bitbucket": {
                "commit_sha": self.commit_sha,
                "branch": self.branch,
                "tag": self.tag,
                "repository": self.repository,
                "repository_uuid": self.repository_uuid,
                "build_number": self.build_number,
                "pipeline_uuid": self.pipeline_uuid,
                "step_uuid": self.step_uuid,
                "step_run_number": self.step_run_number,
                "pull_request_id": self.pull_request_id,
                "pull_request_destination_branch": self.pull_request_destination_branch,
                "deployment_environment": self.deployment_environment,
                "pipeline_url": self.pipeline_url,
            },
        }

    def tags(self) -> list[str]:
        """Tags that find the run from its commit in the Prefect UI."""
        tags = ["bitbucket"]
        if self.short_sha:
            tags.append(f"commit:{self.short_sha}")
        if self.branch:
            tags.append(f"branch:{self.branch}")
        if self.tag:
            tags.append(f"tag:{self.tag}")
        if self.build_number:
            tags.append(f"build:{self.build_number}")
        if self.pull_request_id:
            tags.append(f"pr:{self.pull_request_id}")
        if self.deployment_environment:
            tags.append(f"env:{self.deployment_environment}")
        return tags if len(tags) > 1 else []

    def labels(self) -> dict[str, str]:
        """Key/value labels on the run (links back to the pipeline without touching parameters)."""
        labels = {
            "bitbucket.commit": self.commit_sha,
            "bitbucket.repository": self.repository,
            "bitbucket.build": self.build_number,
            "bitbucket.pipeline_url": self.pipeline_url,
            "bitbucket.branch": self.branch,
            "bitbucket.tag": self.tag,
            "bitbucket.pull_request": self.pull_request_id,
        }
        return {k: v for k, v in labels.items() if v}

    def default_run_name(self, deployment: str | None = None) -> str | None:
        """``<repo>-build-<n>-<ref>-<sha7>`` (``<repo>-local-<ref>-<sha7>`` from a git checkout outside
        Pipelines); with several deployments in one step, the deployment's name follows, so their runs
        can be told apart (``…-0f3c1e2-etl-daily``)."""
        build = f"build-{self.build_number}" if self.build_number else ("local" if self.checkout else None)
        if not (self.repository and build):
            return None
        slug = self.repository.rsplit("/", 1)[-1]
        ref = self.tag or self.branch or (f"pr-{self.pull_request_id}" if self.pull_request_id else None)
        parts = [slug, build, ref, self.short_sha]
        if deployment:
            parts.append(re.sub(r"[^\w.-]+", "-", deployment).strip("-"))
        return "-".join(p for p in parts if p)

    # -- what a report to Bitbucket addresses ---------------------------------------------------------

    @property
    def reportable(self) -> bool:
        """A commit and repository that Bitbucket's API can address (not a local run)."""
        return bool(
            _SHA.match((self.commit_sha or "").lower())
            and _SLUG.match(self.workspace or "")
            and _SLUG.match(self.repo_slug or "")
        )

    @property
    def commit_path(self) -> str:
        """``/repositories/{workspace}/{repo}/commit/{sha}``, escaped."""
        repo = f"{quote(self.workspace or '', safe='{}')}/{quote(self.repo_slug or '')}"
        return f"/repositories/{repo}/commit/{(self.commit_sha or '').lower()}"

    @property
    def results_url(self) -> str | None:
        """The pipeline's results page (where a build status links)."""
        if not self.build_number:
            return None
        repo = f"{quote(self.workspace or '', safe='{}')}/{quote(self.repo_slug or '')}"
        return f"https://bitbucket.org/{repo}/pipelines/results/{quote(self.build_number)}"

    @property
    def refname(self) -> str | None:
        """The PR's source branch on pull-request builds: that links the status to the pull request."""
        return self.branch if self.pull_request_id else None


# -- outside Pipelines: the git checkout the pipe was started in ------------------------------------------

_REMOTE_REPOSITORY = re.compile(r"[:/](?P<workspace>[\w.-]+)/(?P<slug>[\w.-]+?)(?:\.git)?/?$")


def from_checkout(root: Path) -> Build | None:
    """The commit, branch and repository of the git checkout at ``root`` (a ``docker run`` with the
    repository mounted), read from the files in ``.git`` — the pipe's image has no git. None when
    there is no readable checkout."""
    git = _git_dir(root)
    if git is None:
        return None
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        branch = None
        if head.startswith("ref: "):
            ref = head[len("ref: ") :]
            branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
            commit = _resolve(git, ref)
        else:
            commit = head
        remote = _origin(git)
    except (OSError, UnicodeDecodeError):
        return None
    if not commit or not _SHA.match(commit):
        return None
    match = _REMOTE_REPOSITORY.search(remote or "")
    workspace, slug = (match.group("workspace"), match.group("slug")) if match else (None, None)
    return Build(
        commit_sha=commit,
        branch=branch,
        workspace=workspace,
        repo_slug=slug,
        repository=f"{workspace}/{slug}" if workspace and slug else None,
        checkout=str(root),
    )


def _git_dir(root: Path) -> Path | None:
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir: "):
            path = Path(text[len("gitdir: ") :])
            path = path if path.is_absolute() else (root / path)
            if (path / "HEAD").is_file():
                return path
    return None


def _resolve(git: Path, ref: str) -> str | None:
    for base in (git, _common_dir(git)):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha.strip()
    return None


def _common_dir(git: Path) -> Path:
    common = git / "commondir"
    if common.is_file():
        path = Path(common.read_text(encoding="utf-8").strip())
        return path if path.is_absolute() else (git / path)
    return git


def _origin(git: Path) -> str | None:
    config = _common_dir(git) / "config"
    if not config.is_file():
        return None
    section = None
    for raw in config.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]' and line.replace(" ", "").startswith("url="):
            return line.split("=", 1)[1].strip()
    return None
