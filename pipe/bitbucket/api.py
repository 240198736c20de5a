"""One small client for the Bitbucket endpoints the pipe uses: the two the reporter writes to, and the
pull requests ``ACTION=cleanup-previews`` reads (:mod:`pipe.bitbucket.pull_requests`).

Two ways in: straight to ``BITBUCKET_API_URL`` with a credential, or (no credential, inside Pipelines)
plain ``http://api.bitbucket.org/2.0`` through the Pipelines auth proxy, which adds the build's own
authorisation — no ``Authorization`` header leaves the pipe then. Every request has a timeout; only
transient failures (connection errors, timeouts, 408/425/429/5xx) are retried, briefly and within a
deadline, and once a call has used up its retries the next calls get one try each until one succeeds
(an API that is down costs one back-off per run, not one per call). A failure becomes one
:class:`BitbucketApiError` that the reporter turns into a warning.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

from pipe.bitbucket.auth import BitbucketAuth
from pipe.deadlines import DeadlineExceeded, call_within
from pipe.errors import PipeError

# The only host the Pipelines auth proxy serves, and only over plain http (the proxy adds the auth).
PROXIED_API_URL = "http://api.bitbucket.org/2.0"
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "prefect-trigger-pipe"


class BitbucketApiError(PipeError):
    """Bitbucket refused a report or could not be reached (reported as a warning, never fatal)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status  # the HTTP status Bitbucket answered with, None when it was not reached
        super().__init__(message)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 0.5  # seconds before the second attempt, doubled for each one after
    connect_timeout: float = 3.05
    read_timeout: float = 5.0
    deadline: float = 10.0  # seconds for one call, every attempt and pause included


class _HeaderAuth(AuthBase):
    """Sets the Authorization header (as an auth object, so a ~/.netrc can never replace it)."""

    def __init__(self, auth: BitbucketAuth) -> None:
        self._auth = auth

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._auth.header()
        return request


class BitbucketApi:
    def __init__(
        self, base_url: str, auth: BitbucketAuth | None, proxy: str | None, retry: RetryPolicy | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.proxy = proxy
        self.retry = retry or RetryPolicy()
        self._auth = _HeaderAuth(auth) if auth else None
        self._struggling = False  # the last call failed on a transient error: do not retry again
        self._session = requests.Session()
        # Through the proxy nothing from the environment may apply: no ~/.netrc credential, no other
        # proxy. Straight to the API, HTTPS_PROXY/NO_PROXY of a self-hosted runner keep working.
        self._session.trust_env = proxy is None
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    @classmethod
    def direct(cls, base_url: str, auth: BitbucketAuth, retry: RetryPolicy | None = None) -> BitbucketApi:
        return cls(base_url, auth, None, retry)

    @classmethod
    def via_proxy(cls, proxy: str, retry: RetryPolicy | None = None) -> BitbucketApi:
        return cls(PROXIED_API_URL, None, proxy, retry)

    @property
    def via_pipelines_proxy(self) -> bool:
        return self.proxy is not None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    def get(self, path: str) -> Any:
        """The parsed JSON body of a 2xx answer; anything else is a :class:`BitbucketApiError`."""
        response = self._send("GET", path, None)
        try:
            return response.json()
        except ValueError:  # requests' JSONDecodeError is a ValueError, whichever JSON library it uses
            where = self._where()
            raise BitbucketApiError(f"{where} answered with something that is not JSON", response.status_code) from None

    def post(self, path: str, body: dict[str, Any]) -> None:
        self._send("POST", path, body)

    def put(self, path: str, body: dict[str, Any]) -> None:
        self._send("PUT", path, body)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> requests.Response:
        """The first 2xx answer, within the retry policy; a body of None sends none (a GET)."""
        policy = self.retry
        deadline = time.monotonic() + policy.deadline
        proxies = {"http": self.proxy, "https": self.proxy} if self.proxy else None
        problem, status = "no attempt was made", None
        attempts = 1 if self._struggling else max(1, policy.attempts)
        for attempt in range(1, attempts + 1):
            remaining = max(0.1, deadline - time.monotonic())
            pause = policy.backoff * 2 ** (attempt - 1)
            try:
                request = functools.partial(
                    self._session.request,
                    method,
                    self.base_url + path,
                    json=body,
                    auth=self._auth,
                    proxies=proxies,
                    timeout=(min(policy.connect_timeout, remaining), min(policy.read_timeout, remaining)),
                    allow_redirects=False,
                )
                # The read timeout restarts with every byte; this bounds the whole answer.
                response = call_within(remaining, request, f"{method} {self._where()}")
            except (requests.ConnectionError, requests.Timeout, DeadlineExceeded) as exc:
                problem, status = f"{self._where()} could not be reached ({_reason(exc)})", None
                transient = True
            except requests.RequestException as exc:
                raise BitbucketApiError(f"{self._where()} refused the request ({_reason(exc)})") from None
            else:
                if response.status_code < 300:
                    self._struggling = False
                    return response
                status = response.status_code
                problem = f"{self._where()} answered HTTP {status}{_error_text(response)}"
                transient = response.status_code in TRANSIENT_STATUS
                pause = max(pause, _retry_after(response))
            if not transient or attempt >= attempts or time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        self._struggling = self._struggling or transient
        raise BitbucketApiError(problem, status)

    def _where(self) -> str:
        return f"Bitbucket (via the Pipelines proxy {self.proxy})" if self.proxy else f"Bitbucket ({self.host})"


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout | DeadlineExceeded):
        return "timed out"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "cannot connect to the proxy"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _error_text(response: requests.Response) -> str:
    """Bitbucket's own error message, short (``{"type": "error", "error": {"message": ...}}``)."""
    try:
        payload = response.json()
    except (ValueError, json.JSONDecodeError):
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message.strip():
        return ""
    message = " ".join(message.split())
    return f": {message[:200]}"


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), 5.0)
    except ValueError:
        return 0.0
