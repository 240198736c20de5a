"""The Prefect credential a run uses, wherever it came from."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pipe.secret import Secret


@dataclass
class Credential:
    """``kind`` says how Prefect receives it: ``api_key`` is sent as ``Authorization: Bearer``
    (Cloud keys and bearer tokens from a token exchange), ``auth_string`` as HTTP Basic
    (a self-hosted server's ``user:password``), ``none`` for an open server."""

    kind: Literal["api_key", "auth_string", "none"]
    value: Secret | None
    source: str  # for people: "PREFECT_API_KEY", "vault:secret/data/prefect#api_key via OIDC", ...
    # Short-lived cloud credentials obtained on the way (AWS_ACCESS_KEY_ID, ...); handed only to a
    # deploy subprocess, never to os.environ.
    cloud_env: dict[str, Secret] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        """Revoke what can be revoked (Vault tokens), forget the rest. Never raises."""
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception):  # best effort; each closer reports its own failure
                closer()


def is_user_password(value: str) -> bool:
    """A self-hosted server's auth string is ``user:password``."""
    return ":" in value


def check_fetched(kind: str, value: Secret, where: str) -> None:
    """A credential read from a secret store is what the variable said it would be."""
    from pipe.errors import IdentityError

    if kind == "auth_string" and not is_user_password(value.reveal()):
        raise IdentityError(
            f"{where} holds a value that is not of the form user:password",
            "store 'user:password' there, or use PREFECT_API_KEY_SECRET for an API key",
        )
