"""The step's OIDC token: read it, hide it, and describe it without ever showing it.

Bitbucket sets ``BITBUCKET_STEP_OIDC_TOKEN`` when the step has ``oidc: true``. The token is wrapped in a
:class:`~pipe.secret.Secret` the moment it is read. Its claims are decoded *without* verifying the
signature: they are only used to explain things to people (which trust condition to write, why a
server said no). The servers we hand the token to do the verifying.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipe.errors import IdentityError
from pipe.secret import Secret

VARIABLE = "BITBUCKET_STEP_OIDC_TOKEN"
OIDC_FIX = (
    "add `oidc: true` to this step in bitbucket-pipelines.yml (next to `script:`), so Bitbucket sets "
    f"{VARIABLE} for the pipe"
)
# Claims that identify the build and are safe to print (the token itself never is).
SHOWN_CLAIMS = ("iss", "aud", "sub", "repositoryUuid", "branchName", "deploymentEnvironmentUuid", "exp")


@dataclass(frozen=True)
class StepToken:
    value: Secret
    claims: Mapping[str, Any] = field(default_factory=dict)

    # The claims the trust conditions are built from.
    @property
    def issuer(self) -> str:
        return str(self.claims.get("iss") or "")

    @property
    def audiences(self) -> list[str]:
        aud = self.claims.get("aud")
        if isinstance(aud, list):
            return [str(a) for a in aud]
        return [str(aud)] if aud else []

    @property
    def subject(self) -> str:
        return str(self.claims.get("sub") or "")

    @property
    def repository_uuid(self) -> str:
        return str(self.claims.get("repositoryUuid") or "")

    @property
    def branch(self) -> str:
        return str(self.claims.get("branchName") or "")

    @property
    def environment_uuid(self) -> str:
        return str(self.claims.get("deploymentEnvironmentUuid") or "")

    @property
    def expires(self) -> datetime | None:
        exp = self.claims.get("exp")
        if isinstance(exp, int | float):
            return datetime.fromtimestamp(exp, UTC)
        return None

    def expired(self, now: float | None = None) -> bool:
        expires = self.expires
        return expires is not None and expires.timestamp() <= (time.time() if now is None else now)

    def summary(self) -> str:
        """``iss=…, aud=…, sub=…`` — the non-secret claims, for messages and DRY_RUN."""
        return ", ".join(f"{name}={shown}" for name, shown in _shown(self.claims))

    def expiry_note(self) -> str:
        """``' (the token expired at …)'`` when it has, else ``''``: the likeliest cause of many refusals."""
        if not self.expired() or self.expires is None:
            return ""
        return f" (this step token expired at {self.expires:%Y-%m-%d %H:%M:%S} UTC; rerun the step for a fresh one)"


def raw(variables: Mapping[str, Any], env: Mapping[str, str]) -> Secret | None:
    """The step token's text, from the validated variables or else the raw environment."""
    text = str(variables.get(VARIABLE) or env.get(VARIABLE) or "").strip()
    return Secret(text) if text else None  # registered for masking before anything else can print it


def read(value: Secret | None) -> StepToken:
    """The step token; missing means the step lacks ``oidc: true``."""
    if not value:
        raise IdentityError(f"{VARIABLE} is not set, but an OIDC credential source is configured", OIDC_FIX)
    return StepToken(value=value, claims=decode_claims(value))


def peek(value: Secret | None) -> StepToken | None:
    """Like :func:`read`, but ``None`` when there is no token (for DRY_RUN descriptions)."""
    return read(value) if value else None


def decode_claims(token: Secret) -> dict[str, Any]:
    """The JWT payload, not verified. A malformed token fails here, naming only its shape."""
    parts = token.reveal().split(".")
    if len(parts) != 3:
        raise IdentityError(
            f"{VARIABLE} is not a JSON Web Token (expected 3 dot-separated parts, found {len(parts)})",
            "do not set it yourself; let Bitbucket set it with `oidc: true` on the step",
        )
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError):
        raise IdentityError(
            f"{VARIABLE} has a payload that is not base64url-encoded JSON",
            "do not set it yourself; let Bitbucket set it with `oidc: true` on the step",
        ) from None
    if not isinstance(claims, dict):
        raise IdentityError(
            f"{VARIABLE} has a payload that is not a JSON object", "let Bitbucket set it with `oidc: true`"
        )
    return claims


def _shown(claims: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for name in SHOWN_CLAIMS:
        value = claims.get(name)
        if value in (None, "", []):
            continue
        if name == "exp" and isinstance(value, int | float):
            when = datetime.fromtimestamp(value, UTC)
            minutes = round((value - time.time()) / 60)
            relative = f"in {minutes} min" if minutes >= 0 else f"expired {-minutes} min ago"
            out.append((name, f"{when:%Y-%m-%dT%H:%M:%SZ} ({relative})"))
        elif isinstance(value, list):
            out.append((name, ",".join(str(v) for v in value)))
        else:
            out.append((name, str(value)))
    return out
