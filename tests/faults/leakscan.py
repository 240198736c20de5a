"""The leak scan run over every piece of output the fault and hostile-input tests see.

It looks for the credentials the tests hand the pipe (the server's auth string, API keys), the
password part of ``user:password``, their Base64 forms (an ``Authorization: Basic …`` header that
slipped into a log line), and shapes that are secret whatever their value: URL user-info, bearer and
basic authorization headers, Prefect API keys.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from tests.support.prefect_server import AUTH_STRING

# Every credential the tests in this directory put into a pipe's environment.
KNOWN: set[str] = {AUTH_STRING}
# Long enough that a match is not an accident.
_MIN = 6
_SHAPES = {
    "an Authorization header": re.compile(r"(?i)\bauthorization\s*[:=]\s*\S+"),
    "a Basic credential": re.compile(r"(?i)\bbasic\s+[A-Za-z0-9+/]{12,}={0,2}"),
    "a Bearer token": re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{12,}"),
    "a Prefect API key": re.compile(r"\bpn[ub]_[A-Za-z0-9]{20,}"),
    "user:password in a URL": re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@*]+:[^/\s@*]+@"),
}


def remember(*values: str | None) -> None:
    for value in values:
        if value and len(value) >= _MIN:
            KNOWN.add(value)


def _forms(secret: str) -> Iterable[str]:
    yield secret
    yield base64.b64encode(secret.encode("utf-8", "surrogatepass")).decode()
    if ":" in secret:
        password = secret.split(":", 1)[1]
        if len(password) >= _MIN:
            yield password


def leaks(text: str, extra: Iterable[str] = ()) -> list[str]:
    """What in ``text`` looks like a leaked secret (empty when clean)."""
    found = []
    for secret in {*KNOWN, *(e for e in extra if e and len(e) >= _MIN)}:
        for form in _forms(secret):
            if form in text:
                found.append(f"a known credential ({len(form)} characters, starting {form[:3]!r}…)")
                break
    found += [f"{what}" for what, shape in _SHAPES.items() if shape.search(text)]
    return found


def assert_clean(text: str, extra: Iterable[str] = (), where: str = "output") -> None:
    found = leaks(text, extra)
    assert not found, f"the {where} leaks: {', '.join(found)}"
