"""The environment ``prefect deploy`` runs in, and so its build and push steps.

In Bitbucket a pipe receives only the variables its ``variables:`` block names: what a user hands the
pipe is meant for the project. So the CLI gets the step's environment, less

* the pipe's own credentials (:data:`PIPE_CREDENTIALS`) and Bitbucket's secret variables
  (``BITBUCKET_STEP_OIDC_TOKEN``, ...): the project never sees them;
* what the pipe's image sets for the pipe itself (``PYTHONPATH``, ``PYTHONSAFEPATH``, ...);

and with the Prefect settings that decide where deployments go pinned: the API URL, the credential
(the unused kind set empty) and TLS verification. Environment variables come first in Prefect's
settings order, so a ``prefect.toml`` or ``.env`` in the clone cannot change them. A user's own
secret (a variable whose name says so, such as ``REGISTRY_PASSWORD``) reaches the steps and is
masked in the build log.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pipe.credentials import Credential
from pipe.secret import looks_secret, register

# The pipe's own credentials, by the variables that can hold them in the step or in the CLI's environment.
PIPE_CREDENTIALS = (
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "BITBUCKET_STEP_OIDC_TOKEN",
    "BITBUCKET_ACCESS_TOKEN",
    "ATLASSIAN_API_TOKEN",
    "BITBUCKET_APP_PASSWORD",
)
# Set by the pipe's image for the pipe (or by the shell that started it): not the project's.
_PIPE_PROCESS = ("PYTHONPATH", "PYTHONSAFEPATH", "PYTHONHOME", "PYTHONSTARTUP", "PWD", "OLDPWD", "SHLVL", "_")
# Plain, unwrapped text from the CLI (Rich honours these), no prompts, no telemetry from CI, and no
# __pycache__ left in the clone when Prefect imports the flow (later steps may package the clone).
_CLI_SETTINGS = {
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_CLI_WRAP_LINES": "false",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "COLUMNS": "500",
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "DO_NOT_TRACK": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def is_pipe_credential(name: str) -> bool:
    """A variable that holds the pipe's credential or one of Bitbucket's (never the project's)."""
    return name in PIPE_CREDENTIALS or (name.startswith("BITBUCKET_") and looks_secret(name))


def subprocess_env(step_env: Mapping[str, str], api_url: str, credential: Credential, root: Path) -> dict[str, str]:
    """What the user handed the pipe, the pipe's credential, Prefect's settings pinned (see the module)."""
    env: dict[str, str] = {}
    for name, value in step_env.items():
        if is_pipe_credential(name) or name in _PIPE_PROCESS:
            continue
        if looks_secret(name):
            register(value)  # the user's own secret: for the project's steps, never for the build log
        env[name] = value
    env.setdefault("PATH", os.defpath)
    env.setdefault("HOME", tempfile.gettempdir())
    key = credential.value.reveal() if credential.value else ""
    env["PREFECT_API_URL"] = api_url
    env["PREFECT_API_KEY"] = key if credential.kind == "api_key" else ""
    env["PREFECT_API_AUTH_STRING"] = key if credential.kind == "auth_string" else ""
    env["PREFECT_API_TLS_INSECURE_SKIP_VERIFY"] = "false"
    for name, secret in credential.cloud_env.items():
        env[name] = secret.reveal()
    env.update(_CLI_SETTINGS)
    # git refuses a repository owned by another user (the clone, seen from the pipe's container) unless
    # it is a safe.directory; Prefect's version info and build steps run git there.
    env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0=str(root))
    return env
