"""Report a flow run back to Bitbucket: a commit build status and a Code Insights report.

Reporting is a courtesy, never a reason for a build to change its outcome: every method here catches
everything, retries only what is transient (in :mod:`pipe.bitbucket.api`), and says what went wrong in
one warning line per run. Where a report goes:

- inside Pipelines the report goes through the Pipelines auth proxy, authless (as the toolkit sends
  it: a repository access token, even with every scope, may be refused on report uploads);
- with a credential, statuses go to ``BITBUCKET_API_URL`` (the proxy serves no statuses), and so does the
  report outside Pipelines;
- without one, statuses are skipped (Bitbucket documents no credential-free way for them);
- outside Bitbucket, or with ``REPORT: 'false'``, nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipe import console
from pipe.bitbucket import insights, statuses
from pipe.bitbucket.api import BitbucketApi, BitbucketApiError, RetryPolicy
from pipe.bitbucket.settings import ReportSettings
from pipe.bitbucket.verdict import NOT_AWAITED, STARTED, Verdict, judge
from pipe.build import Build
from pipe.outcome import RunInfo, RunResult
from pipe.urls import plain_http_to_remote

if TYPE_CHECKING:
    from pipe.preview.publish import Preview

_CREDENTIAL_HINT = "set BITBUCKET_ACCESS_TOKEN (or ATLASSIAN_ACCOUNT_EMAIL + ATLASSIAN_API_TOKEN) as secured variables"


class Reporter:
    """Tells Bitbucket about one flow run. Build it with :meth:`from_config`."""

    def __init__(
        self,
        build: Build | None = None,
        statuses_api: BitbucketApi | None = None,
        insights_api: BitbucketApi | None = None,
        notes: tuple[Callable[[str], None], str] | None = None,
        credential_source: str | None = None,
    ) -> None:
        self._build = build
        self._statuses_api = statuses_api
        self._insights_api = insights_api
        self._notes = [notes] if notes else []
        self._credential_source = credential_source
        self._warned = False

    @classmethod
    def from_config(cls, settings: ReportSettings, build: Build, *, retry: RetryPolicy | None = None) -> Reporter:
        """A reporter for ``build`` as ``settings`` say. Never raises."""
        try:
            return cls._from_config(settings, build, retry)
        except Exception as exc:  # reporting must not stop a run from starting
            console.warning(f"Bitbucket reporting is off: its configuration failed ({type(exc).__name__})")
            return cls()

    @classmethod
    def _from_config(cls, settings: ReportSettings, build: Build, retry: RetryPolicy | None) -> Reporter:
        if not settings.enabled or not build.reportable:
            return cls()

        api_url = settings.api_url
        credential = settings.auth.auth
        problem = settings.auth.problem
        if credential and plain_http_to_remote(api_url):
            problem = "BITBUCKET_API_URL uses plain http:// to a remote host, so the credential is not sent"
            credential = None
        proxy = BitbucketApi.via_proxy(settings.pipelines_proxy, retry) if build.in_pipelines else None
        if credential:
            api = BitbucketApi.direct(api_url, credential, retry)
            note = None
            if credential.deprecated:
                note = (
                    console.warning,
                    "Bitbucket app passwords are deprecated: replace BITBUCKET_USERNAME + BITBUCKET_APP_PASSWORD "
                    "with ATLASSIAN_ACCOUNT_EMAIL + ATLASSIAN_API_TOKEN",
                )
            # Reports go through the proxy whenever there is one: repository access tokens with every scope
            # have been refused (403) on report uploads. The proxy serves no build statuses, so those keep the credential.
            return cls(build, api, proxy or api, note, credential.source)

        where = (
            "the Code Insights report goes through the Pipelines proxy"
            if proxy
            else "no Code Insights report either (outside Pipelines)"
        )
        reason = f" ({problem})" if problem else ""
        message = f"Bitbucket build statuses skipped: no credential{reason}; {where}"
        return cls(build, None, proxy, (console.info, f"{message}. To get statuses, {_CREDENTIAL_HINT}"))

    def run_started(self, run: RunInfo, *, awaited: bool = True) -> None:
        """INPROGRESS status and a PENDING report, with the flow run's link; for a run that will not be
        awaited (WAIT=false), a final status and report that say so."""
        try:
            self._report(run, STARTED if awaited else NOT_AWAITED, None)
        except Exception as exc:  # a reporting bug must not fail a build that should pass
            self._warn(f"Could not report the run to Bitbucket ({type(exc).__name__})")

    def run_finished(self, result: RunResult) -> None:
        """SUCCESSFUL / FAILED / STOPPED status and the final report."""
        try:
            self._report(result.run, judge(result), result)
        except Exception as exc:
            self._warn(f"Could not report the run to Bitbucket ({type(exc).__name__})")

    def preview_deployed(self, preview: Preview) -> None:
        """A SUCCESSFUL status and a PASSED report linking to a preview deployment (ACTION=preview)."""
        build = self._build
        if build is None:
            return
        try:
            self._send(
                preview.name,
                lambda: statuses.preview_payload(build, preview),
                lambda: insights.preview_payload(build, preview),
            )
        except Exception as exc:  # a reporting bug must not fail a build that should pass
            self._warn(f"Could not report the preview to Bitbucket ({type(exc).__name__})")

    # -- the story of one report -------------------------------------------------------------

    def _report(self, run: RunInfo, verdict: Verdict, result: RunResult | None) -> None:
        build = self._build
        if build is None:
            return
        self._send(
            run.deployment_name,
            lambda: statuses.payload(build, run, verdict, _detail(verdict, result)),
            lambda: insights.payload(run, verdict, result),
        )

    def _send(
        self, deployment_name: str, status_body: Callable[[], dict[str, Any]], report_body: Callable[[], dict[str, Any]]
    ) -> None:
        """The status and the report of one deployment (each keyed by its name: a later one updates them)."""
        build = self._build
        assert build is not None
        self._say_notes()
        status_api, insights_api = self._statuses_api, self._insights_api
        if status_api:
            self._attempt(
                "the Bitbucket build status", lambda: status_api.post(statuses.path(build), status_body()), status_api
            )
        if insights_api:
            self._attempt(
                "the Bitbucket Code Insights report",
                lambda: insights_api.put(insights.path(build, deployment_name), report_body()),
                insights_api,
            )

    def _attempt(self, what: str, send: Callable[[], None], api: BitbucketApi) -> None:
        try:
            send()
        except BitbucketApiError as exc:
            self._warn(f"Could not update {what}: {exc.message}. {self._fix(exc, api)}")
        except Exception as exc:  # a reporting bug must not fail a build that should pass
            self._warn(f"Could not update {what} ({type(exc).__name__})")

    def _fix(self, exc: BitbucketApiError, api: BitbucketApi) -> str:
        if exc.status is None and api.via_pipelines_proxy:
            return (
                "The Pipelines auth proxy exists only inside Bitbucket Pipelines; set BITBUCKET_PIPELINES_PROXY "
                "if it is elsewhere, or REPORT: 'false'"
            )
        if exc.status in (401, 403):
            if self._credential_source:
                return f"Check {self._credential_source}: it needs access to this repository (scope repository:read)"
            return "The Pipelines proxy refused the request"
        if exc.status == 404:
            return "Check that the commit is pushed to this repository and the credential can see it"
        if exc.status is not None and exc.status < 500:
            return "Bitbucket refused the content; please report this to the pipe's maintainers"
        return "Bitbucket may be unavailable; retried briefly"

    def _warn(self, message: str) -> None:
        line = f"{message.rstrip('.')}. The build result is unaffected."
        if self._warned:
            console.debug(line)
            return
        self._warned = True
        console.warning(line)

    def _say_notes(self) -> None:
        while self._notes:
            say, message = self._notes.pop()
            say(message)


def _detail(verdict: Verdict, result: RunResult | None) -> str | None:
    if result is None or not verdict.failed:
        return None
    message = result.state_message or ""
    if result.failing_task:
        return f"task {result.failing_task}" + (f": {message}" if message else "")
    return message or None
