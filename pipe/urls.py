"""The URL and transport rules, in one place: what a URL variable may look like, and where a credential
may travel over plain http (only to this machine)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pipe.errors import ConfigError

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CLOUD_API_PREFIX = "https://api.prefect.cloud/api"


def is_cloud(api_url: str) -> bool:
    """Prefect Cloud's API (as opposed to a self-hosted server)."""
    return api_url.startswith(CLOUD_API_PREFIX)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_to_remote(url: str) -> bool:
    """Whether ``url`` would carry what is sent to it unencrypted off this machine."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback(parts.hostname or "")


def parse_http_url(name: str, value: str) -> str:
    """An http(s) URL with a host and without credentials, spaces or control characters."""
    value = value.strip()
    if CONTROL.search(value) or " " in value:
        raise ConfigError(f"{name} contains spaces or control characters", "set it to a plain https:// URL")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc})", "fix the host name") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{name} must start with https:// (or http:// for a local server)", "fix the URL")
    if "@" in parts.netloc:
        raise ConfigError(
            f"{name} must not contain credentials",
            "remove user:password@ from the URL and set PREFECT_API_AUTH_STRING or PREFECT_API_KEY as a secured variable",
        )
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc})", "fix the host or port") from None
    if not host:
        raise ConfigError(f"{name} has no host name", "set it to a full URL such as https://prefect.example.com/api")
    return value


def secure_url(name: str, value: str, carries: str) -> str:
    """An https:// URL, or http:// to this machine: ``carries`` (the step token, a credential) travels over it."""
    url = parse_http_url(name, value)
    refuse_plain_http(name, url, carries)
    return url


def refuse_plain_http(name: str, url: str, carries: str) -> None:
    if plain_http_to_remote(url):
        raise ConfigError(
            f"{name} uses plain http:// to a remote host, which would send {carries} unencrypted",
            "use an https:// URL",
        )
