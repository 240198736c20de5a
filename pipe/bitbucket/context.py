"""The build being reported on, from Bitbucket's default variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

# What Bitbucket's own variables look like; anything else is not a Pipelines build we can address.
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_SLUG = re.compile(r"^[\w.{}-]+$")


@dataclass(frozen=True)
class BuildContext:
    commit: str
    workspace: str
    repo_slug: str
    in_pipelines: bool  # CI is set: the Pipelines auth proxy is there to use
    branch: str | None = None
    pr_id: str | None = None
    build_number: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BuildContext | None:
        """The build, or None outside Bitbucket (no commit or repository to report on)."""
        commit = (env.get("BITBUCKET_COMMIT") or "").strip().lower()
        workspace = (env.get("BITBUCKET_WORKSPACE") or env.get("BITBUCKET_REPO_OWNER") or "").strip()
        repo_slug = (env.get("BITBUCKET_REPO_SLUG") or "").strip()
        full_name = (env.get("BITBUCKET_REPO_FULL_NAME") or "").strip()
        if (not workspace or not repo_slug) and full_name.count("/") == 1:
            workspace, repo_slug = (part.strip() for part in full_name.split("/"))
        if not _SHA.match(commit) or not _SLUG.match(workspace) or not _SLUG.match(repo_slug):
            return None
        return cls(
            commit=commit,
            workspace=workspace,
            repo_slug=repo_slug,
            in_pipelines=bool(env.get("CI")),
            branch=(env.get("BITBUCKET_BRANCH") or "").strip() or None,
            pr_id=(env.get("BITBUCKET_PR_ID") or "").strip() or None,
            build_number=(env.get("BITBUCKET_BUILD_NUMBER") or "").strip() or None,
        )

    @property
    def commit_path(self) -> str:
        """``/repositories/{workspace}/{repo}/commit/{sha}``, escaped."""
        return f"/repositories/{quote(self.workspace, safe='{}')}/{quote(self.repo_slug)}/commit/{self.commit}"

    @property
    def pipeline_url(self) -> str | None:
        if not self.build_number:
            return None
        repo = f"{quote(self.workspace, safe='{}')}/{quote(self.repo_slug)}"
        return f"https://bitbucket.org/{repo}/pipelines/results/{quote(self.build_number)}"

    @property
    def refname(self) -> str | None:
        """The PR's source branch on pull-request builds: that links the status to the pull request."""
        return self.branch if self.pr_id else None
