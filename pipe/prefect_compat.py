"""Which Prefect servers the pipe works with, and what each of them accepts.

The pipe speaks through the Prefect 3.9 client, but servers reject any field they do not know
(request models forbid extra fields): ``labels`` on run creation (none before 3.1.11), ``text`` on log
filters (none before 3.4), ``end_time`` on task-run filters (none before 3.6). So requests carry only
the fields the pipe set, and ``labels`` only where the server has them. Below the lowest supported
version (and on Prefect 2) the pipe refuses on first contact, before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipe.errors import PrefectError

# The oldest server the compatibility tier (tests/compat) runs the pipe against: 3.0.11 and 3.4.25 pass
# every case there, 3.9.1 the rest of the suite, and 3.2.15 and 3.6.29 passed the same cases by hand.
# Prefect 2 has another API.
LOWEST_SUPPORTED = "3.0.11"
# DeploymentFlowRunCreate.labels and DeploymentCreate.labels first appear in prefect 3.1.11 (3.0.11 has
# neither, 3.2.15 both).
LABELS_SINCE = "3.1.11"


@dataclass(frozen=True, order=True)
class ServerVersion:
    """A Prefect release as ``/api/admin/version`` names it (``3.4.25``, ``3.2.0rc1``, ``3.1.0.dev3``)."""

    release: tuple[int, int, int]
    text: str = ""

    def __str__(self) -> str:
        return self.text or ".".join(map(str, self.release))

    def at_least(self, other: str) -> bool:
        lowest = parse_version(other)
        assert lowest is not None, other
        return self.release >= lowest.release


def parse_version(text: str) -> ServerVersion | None:
    """The release numbers at the start of ``text``; None when it does not start with one."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        return None
    major, minor, patch = match.groups()
    return ServerVersion((int(major), int(minor), int(patch or 0)), text.strip())


class UnsupportedServer(PrefectError):
    """The Prefect server is older than the oldest one the pipe works with."""


def check_supported(version: ServerVersion, where: str) -> None:
    """Raise :class:`UnsupportedServer` for Prefect 2 and anything below LOWEST_SUPPORTED."""
    if version.at_least(LOWEST_SUPPORTED):
        return
    raise UnsupportedServer(
        f"{where} runs Prefect {version}; this pipe needs Prefect {LOWEST_SUPPORTED} or newer",
        f"upgrade the Prefect server to {LOWEST_SUPPORTED} or newer",
    )


def accepts_labels(version: ServerVersion | None) -> bool:
    """Whether run and deployment creation take ``labels`` (an unknown version is taken to be recent)."""
    return version is None or version.at_least(LABELS_SINCE)


def filter_body(**parts: Any) -> dict[str, Any]:
    """A ``/…/filter`` request body with only what was set: each filter model with only the fields
    given to it (Prefect's client sends every field, defaults as ``null``, and older servers refuse
    the fields they do not know), and no key at all for what is None (the server's default)."""
    from pydantic import BaseModel

    return {
        key: value.model_dump(mode="json", exclude_unset=True) if isinstance(value, BaseModel) else value
        for key, value in parts.items()
        if value is not None
    }


# -- a refused request (422) ---------------------------------------------------------------------

USER_FIELDS = ("parameters", "job_variables")  # what the pipe sends as the user gave it


def rejected_fields(body: Any) -> list[str]:
    """The body fields a 422 names, dotted (``labels``, ``logs.text``, ``parameters.n``)."""
    errors = body.get("exception_detail") or body.get("detail") if isinstance(body, Mapping) else None
    if not isinstance(errors, list):
        return []
    fields = []
    for error in errors:
        loc = error.get("loc") if isinstance(error, Mapping) else None
        if isinstance(loc, list) and loc:
            parts = [str(part) for part in (loc[1:] if loc[0] == "body" else loc)]
            fields.append(".".join(parts) or "body")
    return list(dict.fromkeys(fields))


def user_input_rejected(fields: list[str]) -> bool:
    """Whether every rejected field is one the user wrote (PARAMETERS or JOB_VARIABLES)."""
    return bool(fields) and all(field.split(".", 1)[0] in USER_FIELDS for field in fields)
