"""A throwaway OIDC issuer that signs tokens shaped like Bitbucket Pipelines' step tokens.

RS256 with a fresh RSA key per test session. Claims follow Bitbucket's documented set: ``iss`` is the
workspace's issuer URL, ``aud`` the workspace ARI, ``sub`` ``{repositoryUuid}:{stepUuid}``, UUIDs with
their braces. Every token issued is remembered by the leak scan.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.identity import leaks
from tests.support.pipe import BITBUCKET_ENV

WORKSPACE = "acme"
WORKSPACE_UUID = "{5e6f7a8b-0000-4000-8000-00000000000a}"
ISSUER = f"https://api.bitbucket.org/2.0/workspaces/{WORKSPACE}/pipelines-config/identity/oidc"
AUDIENCE = f"ari:cloud:bitbucket::workspace/{WORKSPACE_UUID.strip('{}')}"
REPO_UUID = BITBUCKET_ENV["BITBUCKET_REPO_UUID"]
OTHER_REPO_UUID = "{9f9f9f9f-0000-4000-8000-0000000000ff}"
STEP_UUID = BITBUCKET_ENV["BITBUCKET_STEP_UUID"]
PIPELINE_UUID = BITBUCKET_ENV["BITBUCKET_PIPELINE_UUID"]
KEY_ID = "test-key-1"


class Issuer:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self._key.public_key()
        self.public_pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Bitbucket's claim set for a push build of ``main``; ``name=None`` removes a claim."""
        now = int(time.time())
        repo = overrides.get("repositoryUuid", REPO_UUID)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"{repo}:{STEP_UUID}",
            "iat": now,
            "exp": now + 3600,
            "repositoryUuid": repo,
            "workspaceUuid": WORKSPACE_UUID,
            "pipelineUuid": PIPELINE_UUID,
            "stepUuid": STEP_UUID,
            "branchName": "main",
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(self, **overrides: Any) -> str:
        value = jwt.encode(self.claims(**overrides), self._key, algorithm="RS256", headers={"kid": KEY_ID})
        leaks.remember(value, value.rsplit(".", 1)[1])  # the signature alone is as telling as the token
        return value

    def verify(self, token: str, audience: str | list[str] = AUDIENCE) -> dict[str, Any]:
        """What a real relying party does: signature, issuer, audience and expiry. Raises jwt errors."""
        return jwt.decode(token, self.public_key, algorithms=["RS256"], audience=audience, issuer=ISSUER)


def random_secret(prefix: str) -> str:
    value = f"{prefix}{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"
    leaks.remember(value)
    return value
