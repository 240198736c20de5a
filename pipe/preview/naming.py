"""The name of a preview deployment: ``PREVIEW_NAME``, a template with ``{deployment}``, ``{pr}`` and
``{branch}`` (default ``{deployment}-pr-{pr}``).

The same template names previews when they are deployed and recognises them when they are cleaned
up, so ``{pr}`` is required: it is what ties a name to its pull request.
"""

from __future__ import annotations

import re
import string

from pipe.errors import ConfigError

DEFAULT_TEMPLATE = "{deployment}-pr-{pr}"
FIELDS = ("deployment", "pr", "branch")
MAX_TEMPLATE = 200
# Prefect refuses these in deployment names; a branch's are replaced, a template's are refused.
_BANNED = re.compile(r"[/%&><\x00-\x1f\x7f]")
_BRANCH_UNSAFE = re.compile(r"[^\w.-]+")


def check_template(text: str | None) -> str:
    """``PREVIEW_NAME`` as set (None: the default), checked: only the three fields, ``{pr}`` among them."""
    template = (text or "").strip() or DEFAULT_TEMPLATE
    fix = f"use a template such as '{DEFAULT_TEMPLATE}' with the fields {{deployment}}, {{pr}} and {{branch}}"
    if len(template) > MAX_TEMPLATE:
        raise ConfigError(f"PREVIEW_NAME is longer than {MAX_TEMPLATE} characters", fix)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"PREVIEW_NAME is not a valid template ({exc})", fix) from None
    fields = []
    for literal, field, spec, conversion in parts:
        if _BANNED.search(literal):
            raise ConfigError(
                "PREVIEW_NAME contains a character Prefect refuses in names (/ % & > < or a control)", fix
            )
        if field is None:
            continue
        if field not in FIELDS or spec or conversion:
            raise ConfigError(f"PREVIEW_NAME uses {{{field}}}, which is not one of its fields", fix)
        fields.append(field)
    for index, (_, field, _, _) in enumerate(parts):
        if field != "pr":
            continue
        before = parts[index][0]
        after = parts[index + 1][0] if index + 1 < len(parts) else ""
        next_field = parts[index + 1][1] if index + 1 < len(parts) else None
        if (
            (before and before[-1].isdigit())
            or (not before and index > 0)
            or (after and after[0].isdigit())
            or (not after and next_field is not None)
        ):
            raise ConfigError(
                "PREVIEW_NAME needs a separator that is not a digit on each side of {pr} (in 'etl2' + '5' the pull "
                "request could be 5 or 25)",
                fix,
            )
    if "pr" not in fields:
        raise ConfigError(
            "PREVIEW_NAME has no {pr}: previews of different pull requests would share a name, and clean-up "
            "could not tell whose they are",
            fix,
        )
    return template


def render(template: str, deployment: str, pr: str, branch: str | None) -> str:
    """The preview's name; a branch's ``/`` (and anything else Prefect refuses) becomes ``-``."""
    safe_branch = _BRANCH_UNSAFE.sub("-", branch or "").strip("-") or "branch"
    return template.format(deployment=deployment, pr=pr, branch=safe_branch)


def pattern(template: str) -> re.Pattern[str]:
    """What the template's names look like, the pull request's number captured as ``pr``."""
    regex = []
    pr_seen = False
    for literal, field, _, _ in string.Formatter().parse(template):
        regex.append(re.escape(literal))
        if field == "pr":
            regex.append("(?P=pr)" if pr_seen else r"(?P<pr>[0-9]+)")
            pr_seen = True
        elif field is not None:
            regex.append(".+?")
    return re.compile("".join(regex) + r"\Z")


def pull_request_of(template: str, name: str) -> str | None:
    """The pull request a name made by ``template`` belongs to; None for a name it did not make."""
    match = pattern(template).match(name)
    return match.group("pr") if match else None
