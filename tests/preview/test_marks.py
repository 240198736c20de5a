"""The three marks of a preview: clean-up and updates touch a deployment only with all of them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pipe.build import Build
from pipe.preview.marks import is_own_preview, labels, preview_of, tags

TEMPLATE = "{deployment}-pr-{pr}"
REPO = "acme/repo"
BUILD = Build(
    commit_sha="a" * 40,
    branch="feature/x",
    repository=REPO,
    workspace="acme",
    repo_slug="repo",
    pull_request_id="7",
    build_number="3",
)


def deployment(
    name: str = "etl-pr-7", tags: list[str] | None = None, labels: dict[str, Any] | None = None
) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        tags=["preview", "pr:7", "branch:feature/x"] if tags is None else tags,
        labels={"bitbucket.repository": REPO, "bitbucket.pull_request": "7"} if labels is None else labels,
    )


def test_tags_and_labels_of_the_build() -> None:
    assert tags(BUILD) == ["preview", "pr:7", "branch:feature/x", f"repo:{REPO}"]
    assert labels(BUILD)["bitbucket.repository"] == REPO
    assert labels(BUILD)["bitbucket.pull_request"] == "7"


def test_all_three_marks_give_the_pull_request() -> None:
    assert preview_of(deployment(), REPO, TEMPLATE) == "7"
    assert preview_of(deployment(tags=["preview", "pr:7"]), REPO, TEMPLATE) == "7"


@pytest.mark.parametrize(
    "found",
    [
        deployment(tags=["pr:7", "branch:feature/x"]),  # no preview tag
        deployment(tags=["preview", "branch:feature/x"]),  # no pr:<id> tag
        deployment(tags=["preview", "pr:8"]),  # pr tag of another pull request
        deployment(tags=[]),
        deployment(labels={"bitbucket.repository": "acme/other", "bitbucket.pull_request": "7"}),
        deployment(labels={"bitbucket.pull_request": "7"}),  # no repository label
        deployment(labels={"bitbucket.repository": REPO, "bitbucket.pull_request": "8"}),  # label PR differs
        deployment(labels={"bitbucket.repository": REPO}),  # no pull request label
        deployment(labels={}),
        deployment(name="etl"),  # a name the template did not make
        deployment(name="etl-pr-7-old"),
        deployment(name="etl-pr-8", tags=["preview", "pr:7"]),  # name's PR differs from the marks
    ],
)
def test_missing_or_different_marks_are_not_a_preview(found: SimpleNamespace) -> None:
    assert preview_of(found, REPO, TEMPLATE) is None


def test_tags_and_labels_may_be_none() -> None:
    assert preview_of(SimpleNamespace(name="etl-pr-7", tags=None, labels=None), REPO, TEMPLATE) is None


def test_own_preview() -> None:
    assert is_own_preview(deployment(), BUILD, TEMPLATE) is True


def test_another_repositorys_preview_is_not_own() -> None:
    other = deployment(labels={"bitbucket.repository": "acme/other", "bitbucket.pull_request": "7"})
    assert is_own_preview(other, BUILD, TEMPLATE) is False


def test_another_pull_requests_preview_is_not_own() -> None:
    other = deployment(
        name="etl-pr-8",
        tags=["preview", "pr:8", "branch:feature/x"],
        labels={"bitbucket.repository": REPO, "bitbucket.pull_request": "8"},
    )
    assert is_own_preview(other, BUILD, TEMPLATE) is False


@pytest.mark.parametrize("unlabelled", [{}, None, {"team": "data"}])
def test_unlabelled_deployment_with_this_pull_requests_tags_is_own(unlabelled: dict[str, str] | None) -> None:
    mine = ["preview", "pr:7", "branch:feature/x", f"repo:{REPO}", "etl"]
    found = SimpleNamespace(name="etl-pr-7", tags=mine, labels=unlabelled)
    assert is_own_preview(found, BUILD, TEMPLATE) is True
    # Another repository's unlabelled preview of a pull request with the same number and branch is not.
    theirs = SimpleNamespace(name="etl-pr-7", tags=[*mine[:3], "repo:acme/other"], labels=unlabelled)
    assert is_own_preview(theirs, BUILD, TEMPLATE) is False


@pytest.mark.parametrize(
    ("name", "found_tags"),
    [
        ("etl-pr-7", []),  # a production deployment that happens to have the name
        ("etl-pr-7", ["preview", "pr:7"]),  # no branch tag
        ("etl-pr-7", ["pr:7", "branch:feature/x"]),  # no preview tag
        ("etl-pr-7", ["preview", "pr:7", "branch:main"]),  # another branch
        ("etl-pr-8", ["preview", "pr:7", "branch:feature/x"]),  # another pull request's name
    ],
)
def test_unlabelled_deployment_without_the_tags_is_not_own(name: str, found_tags: list[str]) -> None:
    found = SimpleNamespace(name=name, tags=found_tags, labels={})
    assert is_own_preview(found, BUILD, TEMPLATE) is False
