"""The commit being built, read from Bitbucket's default variables.

One object carries it to every place that needs it: the run's parameters and tags, its labels,
the default run name and the idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CommitMetadata:
    commit_sha: str | None
    branch: str | None
    tag: str | None
    repository: str | None  # workspace/slug
    repository_uuid: str | None
    build_number: str | None
    pipeline_uuid: str | None
    step_uuid: str | None
    step_run_number: str | None
    pull_request_id: str | None
    pull_request_destination_branch: str | None
    deployment_environment: str | None
    pipeline_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CommitMetadata:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        workspace = get("BITBUCKET_WORKSPACE") or get("BITBUCKET_REPO_OWNER")
        slug = get("BITBUCKET_REPO_SLUG")
        repository = get("BITBUCKET_REPO_FULL_NAME") or (f"{workspace}/{slug}" if workspace and slug else None)
        build = get("BITBUCKET_BUILD_NUMBER")
        pipeline_url = None
        if repository and build:
            pipeline_url = f"https://bitbucket.org/{repository}/pipelines/results/{build}"
            step = get("BITBUCKET_STEP_UUID")
            if step:
                pipeline_url += f"/steps/{step}"
        return cls(
            commit_sha=get("BITBUCKET_COMMIT"),
            branch=get("BITBUCKET_BRANCH"),
            tag=get("BITBUCKET_TAG"),
            repository=repository,
            repository_uuid=get("BITBUCKET_REPO_UUID"),
            build_number=build,
            pipeline_uuid=get("BITBUCKET_PIPELINE_UUID"),
            step_uuid=get("BITBUCKET_STEP_UUID"),
            step_run_number=get("BITBUCKET_STEP_RUN_NUMBER"),
            pull_request_id=get("BITBUCKET_PR_ID"),
            pull_request_destination_branch=get("BITBUCKET_PR_DESTINATION_BRANCH"),
            deployment_environment=get("BITBUCKET_DEPLOYMENT_ENVIRONMENT"),
            pipeline_url=pipeline_url,
        )

    @property
    def in_pipelines(self) -> bool:
        return bool(self.commit_sha and self.repository)

    @property
    def short_sha(self) -> str | None:
        return self.commit_sha[:7] if self.commit_sha else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

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
            "bitbucket": self.as_dict(),
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

    def default_run_name(self) -> str | None:
        if not (self.repository and self.build_number):
            return None
        slug = self.repository.rsplit("/", 1)[-1]
        ref = self.tag or self.branch or (f"pr-{self.pull_request_id}" if self.pull_request_id else None)
        parts = [slug, f"build-{self.build_number}", ref, self.short_sha]
        return "-".join(p for p in parts if p)
