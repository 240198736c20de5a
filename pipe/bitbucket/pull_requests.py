"""The state of pull requests, read from Bitbucket Cloud for ``ACTION=cleanup-previews``.

A preview deployment is deleted only when its pull request is known to be no longer open, so every
answer that is not a clear state (refused, unreachable, unreadable) stops the cleanup with one
:class:`PullRequestError` instead of being taken for "closed". Each message names the credential's
variable, never its value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from pipe.bitbucket.api import BitbucketApi, BitbucketApiError
from pipe.build import Build
from pipe.errors import PipeError
from pipe.remote_text import one_line

OPEN = "OPEN"  # a draft pull request is OPEN too (with "draft": true): its preview stays
STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")

NOTHING_DELETED = "nothing was deleted"


class PullRequestError(PipeError):
    """Bitbucket did not tell the state of a pull request (so no preview may be deleted on its account)."""


def read_states(api: BitbucketApi, build: Build, ids: Iterable[str], credential_source: str) -> dict[str, str]:
    """The state of each pull request of build's repository, keyed by id.

    One ``GET /repositories/{workspace}/{repo_slug}/pullrequests/{id}`` each; the first that fails
    stops the reading, as a preview must not be deleted on a state that was not read.
    """
    assert build.workspace and build.repo_slug, "the build names no repository"
    repository = build.repository or f"{build.workspace}/{build.repo_slug}"
    states: dict[str, str] = {}
    for pull_request in dict.fromkeys(ids):  # each id read once, in the order given
        assert pull_request.isascii() and pull_request.isdigit(), f"pull request id {pull_request!r} is not digits"
        try:
            answer = api.get(_path(build, pull_request))
        except BitbucketApiError as exc:
            raise _refused(exc, pull_request, repository, credential_source) from exc
        states[pull_request] = _state(answer, pull_request, repository)
    return states


def _path(build: Build, pull_request: str) -> str:
    """Escaped as :attr:`Build.commit_path` escapes the repository (``{uuid}`` workspaces stay as they are)."""
    repo = f"{quote(build.workspace or '', safe='{}')}/{quote(build.repo_slug or '')}"
    return f"/repositories/{repo}/pullrequests/{pull_request}"


def _refused(exc: BitbucketApiError, pull_request: str, repository: str, source: str) -> PullRequestError:
    if exc.status == 401:
        return PullRequestError(
            f"Bitbucket refused {source} (HTTP 401) when reading pull request #{pull_request} of {repository}",
            "check that the token is valid and not expired",
        )
    if exc.status == 403:
        return PullRequestError(
            f"{source} may not read pull requests of {repository} (HTTP 403)",
            "give it the pull-request read scope (repository access token: 'Pull requests: Read';"
            " Atlassian API token: read:pullrequest:bitbucket)",
        )
    if exc.status == 404:
        return PullRequestError(
            f"Bitbucket has no pull request #{pull_request} in {repository} (HTTP 404)",
            f"check that the token belongs to this repository; {NOTHING_DELETED}",
        )
    if exc.status is not None and 200 <= exc.status < 300:  # answered, but not with JSON
        return _unreadable(pull_request, repository, "not JSON")
    return PullRequestError(exc.message, f"try again later; {NOTHING_DELETED}")


def _state(answer: Any, pull_request: str, repository: str) -> str:
    """The state in Bitbucket's answer, checked to be one of :data:`STATES` and about the pull request asked."""
    if not isinstance(answer, dict):
        raise _unreadable(pull_request, repository, "not a JSON object")
    answered_id = answer.get("id")
    if isinstance(answered_id, bool) or not isinstance(answered_id, int):
        raise _unreadable(pull_request, repository, "no id")
    if answered_id != int(pull_request):
        raise _unreadable(pull_request, repository, f"it is about pull request #{answered_id}")
    if "state" not in answer:
        raise _unreadable(pull_request, repository, "no state")
    state = answer["state"]
    if state not in STATES:
        shown = one_line(repr(state))[:40]
        raise _unreadable(pull_request, repository, f"state {shown} is not one of {', '.join(STATES)}")
    return str(state)


def _unreadable(pull_request: str, repository: str, reason: str) -> PullRequestError:
    return PullRequestError(
        f"Bitbucket's answer for pull request #{pull_request} of {repository} could not be read ({reason})",
        f"{NOTHING_DELETED}; report this if it persists",
    )
