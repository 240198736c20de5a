"""Local servers for the identity tests: a real OpenBao, a real moto, and small stand-ins.

OpenBao and moto run as child processes on free loopback ports; each is stopped (by its own process
group) when the fixture ends. The stand-ins are threads in the test process serving documented
endpoints; each one *checks* what it receives (grant type, token types, audience, the subject token's
signature and claims, the bearer token of the previous hop) and records every request, so a test fails
when the pipe sends the wrong thing — not only when it mishandles an answer.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.processes import Process, free_port
from tests.support.standin import Answer, Received, StandIn, json_answer

BIN = Path(sys.executable).parent


class _Server:
    """A server binary run in a scratch directory of its own, removed when it stops."""

    def __init__(self, args: list[str], health: str, name: str, timeout: float = 60) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"identity-{name}-"))
        self.process = Process(args, self.dir / f"{name}.log", cwd=self.dir)
        try:
            self.process.wait_healthy(health, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.stop(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------- OpenBao


class OpenBao(_Server):
    """``bao server -dev`` (in memory) with the root token ``root``."""

    ROOT_TOKEN = "root"

    def __init__(self) -> None:
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        binary = BIN / "bao"
        args = [
            str(binary),
            "server",
            "-dev",
            f"-dev-root-token-id={self.ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
        ]
        super().__init__(args, f"{self.addr}/v1/sys/health", "openbao")

    def root(self) -> Any:
        import hvac

        return hvac.Client(url=self.addr, token=self.ROOT_TOKEN, timeout=10)

    def accessors(self) -> set[str]:
        """Accessors of every live token (the root token's included)."""
        return set(self.root().list("auth/token/accessors")["data"]["keys"])

    def token_alive(self, accessor: str) -> bool:
        from hvac import exceptions

        try:
            self.root().auth.token.lookup_accessor(accessor)
            return True
        except (exceptions.InvalidRequest, exceptions.Forbidden, exceptions.InvalidPath):
            return False


# --------------------------------------------------------------------------------------------- moto


class Moto(_Server):
    """``moto_server`` serving STS, Secrets Manager and SSM (it does not validate web identity tokens)."""

    ACCOUNT = "123456789012"
    REGION = "eu-west-1"

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], f"{self.url}/moto-api/", "moto"
        )

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=self.REGION
        ).client(service, endpoint_url=self.url)


# --------------------------------------------------------------------------------------------- stand-ins


# AWS STS ---------------------------------------------------------------------------------------------

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def sts_error(code: str, message: str, status: int = 400, kind: str = "Sender") -> Answer:
    """AWS's real Query-protocol error document."""
    body = (
        f'<ErrorResponse xmlns="{STS_NS}">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{code}</Code>\n'
        f"    <Message>{message}</Message>\n  </Error>\n  <RequestId>4f3c0f1e-0000-4000-8000-000000000000</RequestId>\n"
        "</ErrorResponse>\n"
    )
    return Answer(status, body, "text/xml")


# The messages AWS STS really sends for these codes.
INVALID_IDENTITY_TOKEN = sts_error(
    "InvalidIdentityToken",
    "No OpenIDConnect provider found in your account for https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
)
ACCESS_DENIED = sts_error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", status=403)
IDP_COMMUNICATION_ERROR = sts_error(
    "IDPCommunicationError",
    "The request could not be fulfilled because the identity provider (IDP) that was asked to verify the incoming identity token could not be reached.",
)
THROTTLING = sts_error("Throttling", "Rate exceeded", status=400)


class StsStandIn(StandIn):
    """AWS STS ``AssumeRoleWithWebIdentity`` (Query protocol, XML answers).

    Checks the request like STS does: Action and Version, a RoleArn, a RoleSessionName of 2-64
    allowed characters, and a WebIdentityToken that the issuer signed for the expected audience.
    Answers a real-shaped success document with credentials the test can look for in the output.
    """

    def __init__(self, verify: Callable[[str], Any]) -> None:
        super().__init__()
        self.verify = verify
        self.issued: list[dict[str, str]] = []

    def answer(self, request: Received) -> Answer:
        from tests.identity import leaks

        form = request.form()
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return sts_error("InvalidAction", f"Could not find operation {form.get('Action')}")
        if not form.get("RoleArn", "").startswith("arn:aws:iam::"):
            return sts_error("ValidationError", "RoleArn is required")
        name = form.get("RoleSessionName", "")
        if not 2 <= len(name) <= 64:
            return sts_error("ValidationError", "RoleSessionName length must be 2-64")
        try:
            self.verify(form.get("WebIdentityToken", ""))
        except Exception:
            return INVALID_IDENTITY_TOKEN
        n = len(self.issued)
        creds = {
            "AccessKeyId": f"ASIASTANDIN{n:09d}",
            "SecretAccessKey": f"standin-secret-access-key-{os.urandom(12).hex()}",
            "SessionToken": f"standin-session-token-{os.urandom(24).hex()}",
        }
        self.issued.append(creds)
        leaks.remember(*creds.values())
        body = (
            f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">\n'
            "  <AssumeRoleWithWebIdentityResult>\n"
            f"    <SubjectFromWebIdentityToken>subject</SubjectFromWebIdentityToken>\n"
            "    <Audience>ari:cloud:bitbucket::workspace/x</Audience>\n"
            "    <AssumedRoleUser>\n"
            f"      <Arn>arn:aws:sts::123456789012:assumed-role/prefect/{name}</Arn>\n"
            f"      <AssumedRoleId>AROA0000000000EXAMPLE:{name}</AssumedRoleId>\n"
            "    </AssumedRoleUser>\n"
            "    <Credentials>\n"
            f"      <SessionToken>{creds['SessionToken']}</SessionToken>\n"
            f"      <SecretAccessKey>{creds['SecretAccessKey']}</SecretAccessKey>\n"
            "      <Expiration>2099-01-01T00:00:00Z</Expiration>\n"
            f"      <AccessKeyId>{creds['AccessKeyId']}</AccessKeyId>\n"
            "    </Credentials>\n"
            "    <Provider>api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc</Provider>\n"
            "  </AssumeRoleWithWebIdentityResult>\n"
            "  <ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ResponseMetadata>\n"
            "</AssumeRoleWithWebIdentityResponse>\n"
        )
        return Answer(200, body, "text/xml")


# Google Cloud ---------------------------------------------------------------------------------------

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
IAM_SCOPE = "https://www.googleapis.com/auth/iam"


def google_error(status: int, name: str, message: str) -> Answer:
    return json_answer(status, {"error": {"code": status, "message": message, "status": name}})


@dataclass
class GcpWorld:
    """What exists on the Google side: the provider, its condition, who may do what, the secrets."""

    provider_audience: str  # //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/Q
    allowed_audiences: list[str]
    condition: Callable[[dict[str, Any]], bool]  # the provider's attribute condition
    service_account: str | None = None
    sa_grantees: set[str] = field(default_factory=set)  # repositoryUuid values holding workloadIdentityUser
    secrets: dict[str, str] = field(default_factory=dict)  # projects/p/secrets/s -> value
    accessors: set[str] = field(default_factory=set)  # "sa:<email>" or "repo:<uuid>" allowed to access


class GcpStandIn(StandIn):
    """Google STS ``/v1/token``, IAM Credentials ``generateAccessToken`` and Secret Manager ``:access``.

    STS checks the form google-auth sends (grant type, requested and subject token types, scope, the
    provider's full resource name as ``audience``), verifies the subject token's signature with the
    issuer's key, its ``aud`` against the provider's allowed audiences, and applies the attribute
    condition — answering with Google's own OAuth error bodies when any of it fails. The next hops check
    the ``Authorization: Bearer`` token is the one issued by the previous hop.
    """

    def __init__(self, world: GcpWorld, verify: Callable[[str, list[str]], dict[str, Any]]) -> None:
        super().__init__()
        self.world = world
        self.verify = verify
        self.federated: dict[str, dict[str, Any]] = {}  # STS access token -> claims
        self.impersonated: dict[str, str] = {}  # SA access token -> SA

    def answer(self, request: Received) -> Answer:
        path = urlsplit(request.path).path
        if request.method == "POST" and path == "/v1/token":
            return self._sts(request)
        if request.method == "POST" and path.endswith(":generateAccessToken"):
            return self._impersonate(request, path)
        if request.method == "GET" and path.endswith(":access"):
            return self._access(request, path)
        return google_error(404, "NOT_FOUND", f"no such endpoint {path}")

    def _sts(self, request: Received) -> Answer:
        from tests.identity import leaks

        form = request.form()
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return json_answer(400, {"error": "invalid_request", "error_description": "expected a form body"})
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            return json_answer(400, {"error": "unsupported_grant_type", "error_description": "grant_type"})
        if form.get("subject_token_type") != JWT_TYPE or form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return json_answer(
                400,
                {"error": "invalid_request", "error_description": "Invalid subject_token_type or requested_token_type"},
            )
        if form.get("audience") != self.world.provider_audience:
            return json_answer(
                400,
                {
                    "error": "invalid_target",
                    "error_description": 'The target service indicated by the "audience" parameters is invalid.',
                },
            )
        # cloud-platform for direct access; google-auth asks for the IAM scope when it will impersonate.
        if not {CLOUD_PLATFORM, IAM_SCOPE} & set(form.get("scope", "").split()):
            return json_answer(400, {"error": "invalid_scope", "error_description": "scope"})
        try:
            claims = self.verify(form.get("subject_token", ""), self.world.allowed_audiences)
        except Exception as exc:
            if "audience" in str(exc).lower():
                return json_answer(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "The audience in ID Token [...] does not match the expected audience.",
                    },
                )
            return json_answer(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": f"ID Token issued at ... is stale to sign-in or invalid ({type(exc).__name__}).",
                },
            )
        if not self.world.condition(claims):
            return json_answer(
                400,
                {
                    "error": "unauthorized_client",
                    "error_description": "The given credential is rejected by the attribute condition.",
                },
            )
        token = f"ya29.sts-{os.urandom(16).hex()}"
        self.federated[token] = claims
        leaks.remember(token)
        return json_answer(
            200,
            {"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer", "expires_in": 3600},
        )

    def _bearer(self, request: Received) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def _impersonate(self, request: Received, path: str) -> Answer:
        from tests.identity import leaks

        sa = path.rsplit("/", 1)[1].removesuffix(":generateAccessToken")
        claims = self.federated.get(self._bearer(request))
        if claims is None:
            return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if CLOUD_PLATFORM not in request.json().get("scope", []):
            return google_error(400, "INVALID_ARGUMENT", "scope is required")
        if sa != self.world.service_account or claims.get("repositoryUuid") not in self.world.sa_grantees:
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            )
        token = f"ya29.sa-{os.urandom(16).hex()}"
        self.impersonated[token] = sa
        leaks.remember(token)
        return json_answer(200, {"accessToken": token, "expireTime": "2099-01-01T00:00:00Z"})

    def _access(self, request: Received, path: str) -> Answer:
        import base64

        name = path.removeprefix("/v1/").removesuffix(":access")
        secret = name.split("/versions/")[0]
        bearer = self._bearer(request)
        if bearer in self.impersonated:
            principal = f"sa:{self.impersonated[bearer]}"
        elif bearer in self.federated:
            principal = f"repo:{self.federated[bearer].get('repositoryUuid')}"
        else:
            return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if principal not in self.world.accessors:
            return google_error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'secretmanager.versions.access' denied for resource '{name}' (or it may not exist).",
            )
        if secret not in self.world.secrets:
            return google_error(404, "NOT_FOUND", f"Secret [{secret}] not found or has no versions.")
        data = base64.b64encode(self.world.secrets[secret].encode()).decode()
        return json_answer(200, {"name": name.replace("latest", "1"), "payload": {"data": data}})


# RFC 8693 -------------------------------------------------------------------------------------------


class TokenExchangeStandIn(StandIn):
    """An RFC 8693 token endpoint (Keycloak/Okta style).

    Checks the form: ``grant_type`` token-exchange, ``subject_token_type`` JWT, the subject token's
    signature, expiry and audience, the ``audience``/``scope``/``client_id`` parameters it expects, and
    the repository; errors are RFC 6749 JSON (``invalid_grant``, ``invalid_target``, ``invalid_client``).
    """

    def __init__(self, verify: Callable[[str], dict[str, Any]], repository: str, audience: str, client_id: str) -> None:
        super().__init__()
        self.verify = verify
        self.repository = repository
        self.audience = audience
        self.client_id = client_id
        self.issued: list[str] = []

    def answer(self, request: Received) -> Answer:
        from tests.identity import leaks

        form = request.form()
        if request.method != "POST" or form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            return json_answer(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id:
            return json_answer(
                401, {"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"}
            )
        if form.get("subject_token_type") != JWT_TYPE:
            return json_answer(400, {"error": "invalid_request", "error_description": "subject_token_type must be JWT"})
        if form.get("audience") != self.audience:
            return json_answer(
                400, {"error": "invalid_target", "error_description": f"Audience {form.get('audience')} not found"}
            )
        try:
            claims = self.verify(form.get("subject_token", ""))
        except Exception as exc:
            return json_answer(
                400, {"error": "invalid_grant", "error_description": f"Invalid token ({type(exc).__name__})"}
            )
        if claims.get("repositoryUuid") != self.repository:
            return json_answer(403, {"error": "access_denied", "error_description": "Client not allowed to exchange"})
        token = f"eyJ.exchanged-{os.urandom(20).hex()}"
        self.issued.append(token)
        leaks.remember(token)
        return json_answer(
            200,
            {
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": form.get("scope", ""),
            },
        )


class IdentityAwareProxy(StandIn):
    """A self-hosted Prefect behind an identity-aware proxy: only bearer tokens the identity provider
    issued get through; the proxy talks to Prefect with its own Basic credential. HTTP only (no
    websockets), so the end-to-end run uses WAIT=false."""

    def __init__(self, upstream: str, auth_string: str, accepted: Callable[[str], bool]) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.auth_string = auth_string
        self.accepted = accepted
        self.refused = 0

    def answer(self, request: Received) -> Answer:
        import base64

        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or not self.accepted(bearer.removeprefix("Bearer ")):
            self.refused += 1
            return json_answer(401, {"detail": "the identity-aware proxy refused the request"})
        basic = base64.b64encode(self.auth_string.encode()).decode()
        headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": request.headers.get("content-type", "application/json"),
        }
        forwarded = urllib.request.Request(
            f"{self.upstream}{request.path}", data=request.body or None, headers=headers, method=request.method
        )
        try:
            with urllib.request.urlopen(forwarded, timeout=30) as response:
                return Answer(
                    response.status, response.read(), response.headers.get("Content-Type", "application/json")
                )
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read(), error.headers.get("Content-Type", "application/json"))
