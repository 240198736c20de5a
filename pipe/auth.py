"""Authenticate: find the Prefect credential for this step.

An identity-first source (the step's OIDC token exchanged for a secret-store read or a bearer
token) wins over a static key; with neither, the server must be open (a local server).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pipe import console, identity
from pipe.config import Config, is_loopback
from pipe.credentials import Credential
from pipe.errors import ConfigError


def authenticate(config: Config) -> Credential:
    static = _static(config)
    if identity.is_configured(config.variables):
        if static.kind != "none":
            console.info(f"Using the OIDC credential source; the static {static.source} is ignored")
        credential = identity.obtain_credential(config.variables, config.env)
    else:
        credential = static
    _refuse_plain_http(config.api_url, credential)
    console.info(f"Prefect credential: {credential.source}")
    return credential


def _static(config: Config) -> Credential:
    if config.api_key:
        return Credential("api_key", config.api_key, "PREFECT_API_KEY")
    if config.auth_string:
        return Credential("auth_string", config.auth_string, "PREFECT_API_AUTH_STRING")
    return Credential("none", None, "no credential")


def _refuse_plain_http(api_url: str, credential: Credential) -> None:
    parts = urlsplit(api_url)
    if credential.kind != "none" and parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise ConfigError(
            "PREFECT_API_URL uses plain http:// to a remote host, which would send the credential unencrypted",
            "use an https:// URL",
        )
