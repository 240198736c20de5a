"""Secrets that cannot leak by accident.

A :class:`Secret` redacts itself in ``repr``/``str``/f-strings; ``reveal()`` is the one way to get
the value, so every use is greppable. Every secret is registered with :func:`register` so the
console and the log filter can mask it should it appear inside some other text (an error message
from a library, a URL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_REDACTED = "***"
_known: set[str] = set()
# Shorter strings would mask ordinary words; real credentials are much longer.
_MIN_MASK_LENGTH = 4
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class Secret:
    """A string that never shows itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


def register(*values: str | None) -> None:
    """Remember values (and their obvious parts) so :func:`mask` hides them."""
    for value in values:
        if not value or len(value) < _MIN_MASK_LENGTH:
            continue
        _known.add(value)
        if ":" in value:  # user:password — the password alone must not show either
            _, _, password = value.partition(":")
            if len(password) >= _MIN_MASK_LENGTH:
                _known.add(password)


def mask(text: str, extra: Iterable[str] = ()) -> str:
    """Replace every known secret and any URL user-info in ``text``."""
    for value in sorted({*_known, *extra}, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, _REDACTED)
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{_REDACTED}@", text)


# Names that hold a credential: a value is masked from the start, and never handed to a subprocess
# or written anywhere unless the pipe means to.
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|PRIVATE|CREDENTIAL|AUTH|(^|_)KEY($|_)", re.IGNORECASE)
# ...except names that say where a secret is (the pipe's references, endpoints, audiences), not what it is.
_LOCATORS = ("PREFECT_API_KEY_SECRET", "PREFECT_API_AUTH_STRING_SECRET", "IDEMPOTENCY_KEY")
_LOCATOR_SUFFIXES = ("_URL", "_ENDPOINT", "_AUDIENCE", "_SCOPE", "_CLIENT_ID", "_PATH")


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential."""
    upper = name.upper()
    return bool(_SECRET_NAME.search(name)) and upper not in _LOCATORS and not upper.endswith(_LOCATOR_SUFFIXES)
