"""Authenticate: find the Prefect credential for this step.

An identity-first source (the step's OIDC token exchanged for a secret-store read or a bearer
token) wins over a static key; with neither, the server must be open (a local server).
"""

from __future__ import annotations

from pipe import console, identity
from pipe.config import Config
from pipe.credentials import Credential
from pipe.urls import refuse_plain_http


def authenticate(config: Config) -> Credential:
    static = _static(config)
    if config.identity.configured:
        if static.kind != "none":
            console.info(f"Using the OIDC credential source; the static {static.source} is ignored")
        credential = identity.obtain_credential(config.identity)
    else:
        credential = static
    if credential.kind != "none":
        refuse_plain_http("PREFECT_API_URL", config.api_url, "the credential")
    console.info(f"Prefect credential: {credential.source}")
    return credential


def _static(config: Config) -> Credential:
    if config.api_key:
        return Credential("api_key", config.api_key, "PREFECT_API_KEY")
    if config.auth_string:
        return Credential("auth_string", config.auth_string, "PREFECT_API_AUTH_STRING")
    return Credential("none", None, "no credential")
