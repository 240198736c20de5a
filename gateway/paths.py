"""Request paths, normalised before any decision: what is matched is exactly what is forwarded.

The raw (still percent-encoded) path is decoded once. Encoded slashes or backslashes, double encoding,
``.``/``..`` segments, empty segments (``//``), control characters and method-override headers are
refused outright; case and a trailing slash are not significant (the forwarded path is the table's
canonical spelling, see :mod:`gateway.rights`).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

API_PREFIX = "api"
# Headers some frameworks read to change the method; a gateway that decides by method refuses them.
METHOD_OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})


class PathRefused(Exception):
    """A path that cannot be decided safely (answered 400)."""


def segments(raw_path: bytes) -> list[str]:
    """The decoded segments of a raw path, without the empty first one and without a trailing slash."""
    lowered = raw_path.lower()
    if b"%2f" in lowered or b"%5c" in lowered or b"\\" in raw_path:
        raise PathRefused("encoded slashes and backslashes are not accepted in paths")
    if b"?" in raw_path or b"#" in raw_path:
        raise PathRefused("the path carries a query or fragment marker")
    try:
        decoded = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused("the path is not valid UTF-8 once decoded") from None
    if "%" in decoded:
        raise PathRefused("double percent-encoding is not accepted in paths")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in decoded):
        raise PathRefused("control characters are not accepted in paths")
    if not decoded.startswith("/"):
        raise PathRefused("the path must start with /")
    parts = decoded[1:].split("/")
    if parts and parts[-1] == "":
        parts.pop()  # one trailing slash is not significant
    for part in parts:
        if part in ("", ".", ".."):
            raise PathRefused("empty, '.' and '..' segments are not accepted in paths")
    return parts


def override_header(names: Iterable[str]) -> str | None:
    """The first method-override header among ``names``, or None."""
    for name in names:
        if name.lower() in METHOD_OVERRIDE_HEADERS:
            return name.lower()
    return None
