"""A stand-in for the Bitbucket Cloud endpoints the pipe uses — not Bitbucket itself.

It serves, on a free loopback port, the documented endpoints

- ``POST /2.0/repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build`` (commit build status)
- ``PUT  /2.0/repositories/{workspace}/{repo_slug}/commit/{commit}/reports/{reportId}`` (Code Insights)
- ``GET  /2.0/repositories/{workspace}/{repo_slug}/pullrequests/{id}`` (a pull request, for
  ``ACTION=cleanup-previews``)

and is also the Pipelines auth proxy: a request that arrives with an absolute
``http://api.bitbucket.org/2.0/...`` URL in its request line came through the proxy. Every request is
recorded and checked against the documented fields — required fields present, enums valid, lengths
within Bitbucket's limits, at most 10 data fields with valid types, the Authorization header present
(direct) or absent (proxy), no body on a pull request read and a pull request id of digits — and
anything wrong is recorded in ``problems`` and answered with the 400 Bitbucket would give. The limits
are written out here on purpose, not imported from the pipe, so a wrong limit in the pipe cannot agree
with itself.

The pull requests are what a test puts in ``pull_requests`` ((workspace, repo_slug, id) → state); any
other id is answered 404 as Bitbucket answers it. ``forbidden = True`` answers every pull request read
403, as Bitbucket answers a credential without the pull-request read scope.

Failures can be scripted: ``fail_next(503, 502)`` answers the next requests with those codes,
``always_fail = 503`` answers every request so, ``delay = 2.0`` answers late (for timeouts).
The HTTP serving is the stand-in base's (``tests/support/standin.py``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from tests.support.standin import Answer, Received, StandIn

PROXIED_HOST = "api.bitbucket.org"

# Bitbucket Cloud: status key ≤ 40 (its API answers "Ensure this value has at most 40 characters");
# name < 255 and url < 450 (refused otherwise); the rest are Bitbucket's published Code Insights
# limits (Data Center's, the tighter ones, where Cloud publishes none).
STATUS_FIELDS = {"key": 40, "state": None, "name": 255, "description": 255, "url": 450, "refname": 255}
STATUS_REQUIRED = ("key", "state", "url")
STATUS_STATES = {"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"}
REPORT_FIELDS = {
    "title": 450,
    "details": 2000,
    "report_type": None,
    "result": None,
    "reporter": 450,
    "link": 450,
    "logo_url": 450,
    "data": None,
    "external_id": 450,
    "remote_link_enabled": None,
}
REPORT_REQUIRED = ("title", "details", "report_type", "result")
REPORT_TYPES = {"SECURITY", "COVERAGE", "TEST", "BUG"}
REPORT_RESULTS = {"PASSED", "FAILED", "PENDING"}
DATA_TYPES = {"BOOLEAN", "DATE", "DURATION", "LINK", "NUMBER", "PERCENTAGE", "TEXT"}
MAX_DATA = 10
DATA_TITLE = 50
REPORT_ID = re.compile(r"^[A-Za-z0-9._-]{1,40}$")

_COMMIT = r"/2\.0/repositories/(?P<workspace>[^/]+)/(?P<repo>[^/]+)/commit/(?P<commit>[0-9a-f]{40})"
_STATUS_PATH = re.compile(_COMMIT + r"/statuses/build/?$")
_REPORT_PATH = re.compile(_COMMIT + r"/reports/(?P<report_id>[^/]+)$")
# Any last segment matches, so an id that is not digits is recorded as a problem, not as a 404.
_PULL_REQUEST_PATH = re.compile(r"/2\.0/repositories/(?P<workspace>[^/]+)/(?P<repo>[^/]+)/pullrequests/(?P<id>[^/]+)$")
# Bitbucket's answer to a credential that lacks the scope (here: a token with repository read only).
MISSING_SCOPE = {
    "type": "error",
    "error": {
        "message": "Your credentials lack one or more required privilege scopes.",
        "detail": {"required": ["pullrequest"], "granted": ["repository"]},
    },
}


@dataclass
class Recorded:
    method: str
    target: str  # the request line's target, exactly as sent
    path: str
    via_proxy: bool
    headers: dict[str, str]  # names as the client wrote them
    body: Any
    kind: str  # "status", "report", "pull_request" or "unknown"
    answered: int = 0
    problems: list[str] = field(default_factory=list)
    match: dict[str, str] = field(default_factory=dict)


class BitbucketStandIn(StandIn):
    protocol_version = "HTTP/1.1"  # keep-alive, as the pipe's client meets it at Bitbucket

    def __init__(self, expect_authorization: str | None = None) -> None:
        # The exact Authorization header direct requests must carry (None: do not check its value).
        self.expect_authorization = expect_authorization
        self.requests: list[Recorded] = []
        self.always_fail: int | None = None
        self.delay = 0.0
        # The pull requests Bitbucket knows: (workspace, repo_slug, id) → state (OPEN, MERGED, ...).
        self.pull_requests: dict[tuple[str, str, int], str] = {}
        self.forbidden = False  # the credential lacks the pull-request read scope: reads answer 403
        self._script: deque[int] = deque()
        self._lock = threading.Lock()
        super().__init__()

    @property
    def api_url(self) -> str:
        """What BITBUCKET_API_URL points at for direct requests."""
        return f"{self.url}/2.0"

    @property
    def proxy_url(self) -> str:
        """What BITBUCKET_PIPELINES_PROXY points at for authless requests."""
        return self.url

    # -- scripting and reading ---------------------------------------------------------------

    def fail_next(self, *codes: int) -> None:
        with self._lock:
            self._script.extend(codes)

    def _next_failure(self) -> int | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self.always_fail

    def record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)

    @property
    def problems(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}: {p}" for r in self.requests for p in r.problems]

    def accepted(self, kind: str) -> list[Recorded]:
        """Requests of one kind that were answered 2xx, in order."""
        with self._lock:
            return [r for r in self.requests if r.kind == kind and 200 <= r.answered < 300]

    def statuses(self) -> list[dict[str, Any]]:
        return [r.body for r in self.accepted("status")]

    def reports(self) -> list[dict[str, Any]]:
        return [r.body for r in self.accepted("report")]

    def pull_request_reads(self) -> list[Recorded]:
        """Every pull request read, whatever it was answered, in order."""
        with self._lock:
            return [r for r in self.requests if r.kind == "pull_request"]

    # -- answering ---------------------------------------------------------------------------

    def answer(self, request: Received) -> Answer:
        target = request.path
        if request.method == "CONNECT":  # an https request through the proxy: the proxy only speaks http
            entry = Recorded("CONNECT", target, target, True, request.sent_headers, None, "unknown")
            entry.problems.append("CONNECT through the Pipelines proxy: it only proxies plain http")
            return self._answer(entry, 405, {"type": "error", "error": {"message": "CONNECT not supported"}})
        parts = urlsplit(target)
        entry = Recorded(request.method, target, parts.path, "://" in target, request.sent_headers, None, "unknown")
        try:
            entry.body = json.loads(request.body) if request.body else None
        except ValueError:
            entry.problems.append("the body is not JSON")
        self._check_transport(entry, request, parts)
        status_match, report_match = _STATUS_PATH.match(parts.path), _REPORT_PATH.match(parts.path)
        pull_request_match = _PULL_REQUEST_PATH.match(parts.path)
        if status_match and request.method == "POST":
            entry.kind, entry.match = "status", status_match.groupdict()
            entry.problems += check_status(entry.body)
        elif report_match and request.method == "PUT":
            entry.kind, entry.match = "report", report_match.groupdict()
            entry.problems += check_report(entry.body, report_match["report_id"])
        elif pull_request_match and request.method == "GET":
            entry.kind, entry.match = "pull_request", pull_request_match.groupdict()
            entry.problems += check_pull_request_read(request.body, pull_request_match["id"])
        else:
            entry.problems.append(f"no such endpoint: {request.method} {parts.path}")

        if self.delay:
            time.sleep(self.delay)
        failure = self._next_failure()
        if failure is not None:
            return self._answer(entry, failure, {"type": "error", "error": {"message": "Something went wrong"}})
        if entry.kind == "unknown":
            return self._answer(entry, 404, {"type": "error", "error": {"message": "Resource not found"}})
        if any(p.startswith("Authorization") for p in entry.problems):
            return self._answer(entry, 401, {"type": "error", "error": {"message": "Unauthorized"}})
        if entry.problems:
            message = "; ".join(entry.problems)
            return self._answer(entry, 400, {"type": "error", "error": {"message": message}})
        if entry.kind == "pull_request":
            return self._pull_request(entry)
        code = 201 if entry.kind == "status" else 200
        return self._answer(entry, code, {"type": entry.kind, **(entry.body or {})})

    def _check_transport(self, entry: Recorded, request: Received, parts: SplitResult) -> None:
        authorization = request.headers.get("authorization")
        if entry.body is not None and "application/json" not in (request.headers.get("content-type") or ""):
            entry.problems.append("Content-Type is not application/json")
        if entry.via_proxy:
            if parts.scheme != "http" or parts.hostname != PROXIED_HOST or not parts.path.startswith("/2.0/"):
                entry.problems.append(f"the proxy only serves http://{PROXIED_HOST}/2.0/..., not {entry.target}")
            if authorization is not None:
                entry.problems.append("Authorization header sent through the Pipelines proxy (it must be authless)")
            if request.headers.get("proxy-authorization") is not None:
                entry.problems.append("Proxy-Authorization header sent to the Pipelines proxy")
            return
        if not parts.path.startswith("/2.0/"):
            entry.problems.append(f"request target {entry.target!r} is not under /2.0/")
        if authorization is None:
            entry.problems.append("Authorization header missing on a direct API request")
        elif self.expect_authorization is not None and authorization != self.expect_authorization:
            entry.problems.append("Authorization header does not carry the expected credential")

    def _pull_request(self, entry: Recorded) -> Answer:
        if self.forbidden:
            return self._answer(entry, 403, MISSING_SCOPE)
        number = int(entry.match["id"])
        key = (unquote(entry.match["workspace"]), unquote(entry.match["repo"]), number)
        state = self.pull_requests.get(key)
        if state is None:
            return self._answer(entry, 404, {"type": "error", "error": {"message": "Resource not found"}})
        payload = {"type": "pullrequest", "id": number, "state": state, "title": f"Change #{number}", "draft": False}
        return self._answer(entry, 200, payload)

    def _answer(self, entry: Recorded, code: int, payload: dict[str, Any]) -> Answer:
        entry.answered = code
        self.record(entry)
        return Answer(code, json.dumps(payload))


# -- checks against the documented fields ------------------------------------------------------


def check_pull_request_read(body: bytes, pull_request_id: str) -> list[str]:
    problems = [] if body == b"" else ["a pull request read carries a body"]
    if not (pull_request_id.isascii() and pull_request_id.isdigit()):
        problems.append(f"pull request id {pull_request_id!r} is not digits")
    return problems


def check_status(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems = _check_fields(body, STATUS_FIELDS, STATUS_REQUIRED)
    if "state" in body and body["state"] not in STATUS_STATES:
        problems.append(f"state {body['state']!r} is not one of {sorted(STATUS_STATES)}")
    if isinstance(body.get("url"), str) and not body["url"].startswith(("http://", "https://")):
        problems.append("url is not an http(s) URL")
    return problems


def check_report(body: Any, report_id: str) -> list[str]:
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems = [] if REPORT_ID.match(report_id) else [f"report id {report_id!r} is not a short URL-safe id"]
    problems += _check_fields(body, REPORT_FIELDS, REPORT_REQUIRED)
    if "report_type" in body and body["report_type"] not in REPORT_TYPES:
        problems.append(f"report_type {body['report_type']!r} is not one of {sorted(REPORT_TYPES)}")
    if "result" in body and body["result"] not in REPORT_RESULTS:
        problems.append(f"result {body['result']!r} is not one of {sorted(REPORT_RESULTS)}")
    if isinstance(body.get("link"), str) and not body["link"].startswith(("http://", "https://")):
        problems.append("link is not an http(s) URL")
    data = body.get("data", [])
    if not isinstance(data, list):
        return [*problems, "data is not a list"]
    if len(data) > MAX_DATA:
        problems.append(f"data has {len(data)} fields, at most {MAX_DATA} are allowed")
    for index, item in enumerate(data):
        problems += [f"data[{index}] {p}" for p in check_data_item(item)]
    return problems


def check_data_item(item: Any) -> list[str]:
    if not isinstance(item, dict):
        return ["is not an object"]
    problems = [f"has unknown field {k!r}" for k in item if k not in ("title", "type", "value")]
    title = item.get("title")
    if not isinstance(title, str) or not title:
        problems.append("has no title")
    elif len(title) > DATA_TITLE:
        problems.append(f"title is longer than {DATA_TITLE} characters")
    if "value" not in item:
        return [*problems, "has no value"]
    kind, value = item.get("type"), item["value"]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    valid = {
        None: is_number or isinstance(value, str | bool),
        "BOOLEAN": isinstance(value, bool),
        "DATE": isinstance(value, int) and not isinstance(value, bool) and value > 0,
        "DURATION": is_number and value >= 0,
        "NUMBER": is_number,
        "PERCENTAGE": is_number and 0 <= value <= 100,
        "TEXT": isinstance(value, str),
        "LINK": isinstance(value, dict)
        and set(value) == {"text", "href"}
        and isinstance(value["text"], str)
        and isinstance(value["href"], str)
        and value["href"].startswith(("http://", "https://")),
    }
    if kind not in valid:
        problems.append(f"type {kind!r} is not one of {sorted(DATA_TYPES)}")
    elif not valid[kind]:
        problems.append(f"value {value!r} is not a valid {kind or 'untyped'} value")
    return problems


def _check_fields(body: dict[str, Any], allowed: dict[str, int | None], required: tuple[str, ...]) -> list[str]:
    problems = [f"required field {name!r} is missing" for name in required if body.get(name) in (None, "")]
    for name, value in body.items():
        if name not in allowed:
            problems.append(f"unknown field {name!r}")
            continue
        limit = allowed[name]
        if limit is not None:
            if not isinstance(value, str):
                problems.append(f"{name} is not a string")
            elif len(value) > limit:
                problems.append(f"{name} has {len(value)} characters, at most {limit} are allowed")
            elif "\n" in value or "\r" in value:
                problems.append(f"{name} has a line break")
    return problems
