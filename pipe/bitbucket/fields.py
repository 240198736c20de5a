"""Bitbucket's field limits, and text that always fits them.

Bitbucket Cloud documents the fields and enums of commit statuses and Code Insights reports but not
all their lengths; the numbers below are the ones its API enforces (the 40-character status key) or,
where Cloud publishes none, the tighter Data Center limits, so a value that fits here fits there.
"""

from __future__ import annotations

import hashlib
import re

from pipe.remote_text import one_line

STATUS_KEY = 40  # Cloud: "key: Ensure this value has at most 40 characters"
STATUS_NAME = 255
STATUS_DESCRIPTION = 255
STATUS_URL = 450  # a longer URL is refused, and a URL cannot be shortened: it is replaced instead
REPORT_ID = 40
REPORT_TITLE = 450
REPORT_DETAILS = 2000
REPORT_REPORTER = 450
REPORT_LINK = 450
DATA_FIELDS = 10  # Cloud documents 10 data fields per report (Data Center allows 6; the pipe reports to Cloud)
DATA_TITLE = 50
DATA_TEXT = 450

_ELLIPSIS = "…"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def clip(text: str, limit: int) -> str:
    """``text`` on one line, control characters made visible (it may be a flow's text), cut to ``limit``
    characters with an ellipsis when it is longer."""
    text = one_line(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + _ELLIPSIS


def stable_id(prefix: str, name: str, limit: int) -> str:
    """An id for ``name`` that is the same on every run, readable, and at most ``limit`` characters.

    ``greet/ci`` becomes ``prefect-greet-ci-<8 hex>``: the slug is for people, the hash of the exact
    name keeps ``a-b/c`` and ``a/b-c`` (one slug) or two long names with one head apart.
    """
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")
    head = f"{prefix}-{slug}"[: limit - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def http_url(url: str | None, limit: int) -> str | None:
    """``url`` when it is an http(s) URL that fits ``limit``, else None (never a cut URL)."""
    if url and url.startswith(("https://", "http://")) and len(url) <= limit and not any(c.isspace() for c in url):
        return url
    return None
