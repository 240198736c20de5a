"""Token validation against the loopback issuer (discovery + JWKS over http): what is accepted, what is
refused and why, and the gateway's own session tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import jwt
import pytest

from gateway.identity import Identity, TokenRefused, Verifier
from gateway.policy import Policy, parse
from tests.gateway.conftest import AUDIENCE, REPO, SIGNING_KEY, LoopbackIssuer
from tests.identity.issuer import KEY_ID, Issuer

T = TypeVar("T")


def policy(issuer: LoopbackIssuer, **changes: Any) -> Policy:
    return parse(
        {
            "issuer": issuer.url,
            "audiences": [AUDIENCE],
            "upstream": "http://127.0.0.1:9/api",
            "rules": [{"name": "repo", "when": {"repositoryUuid": REPO}, "allow": {"read": True}}],
            **changes,
        }
    )


def with_verifier(issuer: LoopbackIssuer, use: Callable[[Verifier], Awaitable[T]], **changes: Any) -> T:
    async def main() -> T:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            return await use(Verifier(policy(issuer, **changes), SIGNING_KEY.encode(), http))

    return asyncio.run(main())


def refusal(issuer: LoopbackIssuer, token: str) -> str:
    async def use(verifier: Verifier) -> str:
        with pytest.raises(TokenRefused) as caught:
            await verifier.bearer(token)
        return str(caught.value)

    return with_verifier(issuer, use)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key else ""
    return f"{signing_input}.{signature}"


def test_a_step_token_is_accepted_once_and_then_served_from_the_cache(issuer: LoopbackIssuer) -> None:
    token = issuer.token()

    async def use(verifier: Verifier) -> tuple[Identity, int]:
        first = await verifier.bearer(token)
        fetches = issuer.jwks_fetches
        for _ in range(3):
            assert await verifier.bearer(token) is first
        return first, issuer.jwks_fetches - fetches

    identity, refetches = with_verifier(issuer, use)
    assert identity.kind == "issuer" and identity.claims["repositoryUuid"] == REPO
    assert refetches == 0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # Values fixed at collection time, which can be many minutes before the test runs: a day apart.
        ({"exp": int(time.time()) - 86400, "iat": int(time.time()) - 90000}, "it has expired"),
        ({"aud": "ari:cloud:bitbucket::workspace/other"}, "its audience is not one of this gateway's"),
        ({"iss": "https://api.bitbucket.org/2.0/workspaces/evil/pipelines-config/identity/oidc"}, "its issuer is not"),
        ({"nbf": int(time.time()) + 86400}, "it is not valid yet"),
        ({"iat": int(time.time()) + 86400}, "it is not valid yet"),
        ({"exp": None}, "it has no 'exp' claim"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "not-before", "issued-in-the-future", "no-expiry"],
)
def test_claims_that_do_not_hold_are_refused(issuer: LoopbackIssuer, overrides: dict[str, Any], reason: str) -> None:
    assert reason in refusal(issuer, issuer.token(**overrides))


def test_alg_none_is_refused(issuer: LoopbackIssuer) -> None:
    token = forged({"alg": "none", "kid": KEY_ID, "typ": "JWT"}, issuer.claims(), None)
    assert "algorithm 'none' is not accepted" in refusal(issuer, token)


def test_hmac_signed_with_the_issuers_public_key_is_refused(issuer: LoopbackIssuer) -> None:
    token = forged({"alg": "HS256", "kid": KEY_ID, "typ": "JWT"}, issuer.claims(), issuer.signer.public_pem.encode())
    assert "algorithm 'HS256' is not accepted" in refusal(issuer, token)


def test_tampered_claims_are_refused(issuer: LoopbackIssuer) -> None:
    header, _, signature = issuer.token().split(".")
    payload = b64(json.dumps(issuer.claims(repositoryUuid="{another-repository}")).encode())
    assert "its signature does not verify" in refusal(issuer, f"{header}.{payload}.{signature}")


def test_unknown_key_id_refetches_the_keys_at_most_once_per_interval(issuer: LoopbackIssuer) -> None:
    stranger = Issuer()  # same kid name is not enough: a key the issuer never published
    other_kid = jwt.encode(issuer.claims(), stranger._key, algorithm="RS256", headers={"kid": "rotated-away"})
    same_kid = jwt.encode(issuer.claims(), stranger._key, algorithm="RS256", headers={"kid": KEY_ID})

    async def use(verifier: Verifier) -> tuple[list[str], int]:
        await verifier.bearer(issuer.token())  # first fetch
        fetches = issuer.jwks_fetches
        reasons = []
        for token in (other_kid, other_kid + "", same_kid):
            with pytest.raises(TokenRefused) as caught:
                await verifier.bearer(token)
            reasons.append(str(caught.value))
        return reasons, issuer.jwks_fetches - fetches

    reasons, refetches = with_verifier(issuer, use)
    assert "key id 'rotated-away' is not among the issuer's keys" in reasons[0]
    assert "its signature does not verify" in reasons[2]
    assert refetches == 0  # fetched moments ago: within jwks_refetch_seconds, no refetch

    def refetch_allowed(verifier: Verifier) -> Awaitable[int]:
        async def run() -> int:
            await verifier.bearer(issuer.token())
            fetches = issuer.jwks_fetches
            await asyncio.sleep(1.1)
            for _ in range(3):
                with pytest.raises(TokenRefused):
                    await verifier.bearer(other_kid)
            return issuer.jwks_fetches - fetches

        return run()

    assert with_verifier(issuer, refetch_allowed, jwks_refetch_seconds=1) == 1


def test_session_tokens_carry_the_claims_and_are_never_subject_tokens(issuer: LoopbackIssuer) -> None:
    step = issuer.token(exp=int(time.time()) + 600)

    async def use(verifier: Verifier) -> tuple[Identity, int, str, str]:
        subject = await verifier.subject(step)
        session, lifetime = verifier.issue_session(subject)
        identity = await verifier.bearer(session)
        with pytest.raises(TokenRefused) as caught:
            await verifier.subject(session)
        return identity, lifetime, str(caught.value), session

    identity, lifetime, reason, session = with_verifier(issuer, use)
    assert identity.kind == "session" and identity.claims["repositoryUuid"] == REPO
    assert identity.claims["sub"].startswith(REPO)
    assert 590 <= lifetime <= 600  # no later than the step token's expiry (max_beyond_subject_seconds: 0)
    assert "a gateway session token cannot be exchanged" in reason
    other_key = jwt.encode(jwt.decode(session, options={"verify_signature": False}), "x" * 40, algorithm="HS256")
    assert "the session token is not valid: its signature does not verify" in refusal(issuer, other_key)


def test_session_lifetime_is_bounded_by_the_policy(issuer: LoopbackIssuer) -> None:
    step = issuer.token(exp=int(time.time()) + 60)

    async def use(verifier: Verifier) -> int:
        return verifier.issue_session(await verifier.subject(step))[1]

    assert 170 <= with_verifier(issuer, use, session={"max_beyond_subject_seconds": 120}) <= 180
    assert 55 <= with_verifier(issuer, use) <= 60


def test_unreachable_keys_are_the_gateways_problem_not_a_refused_token(issuer: LoopbackIssuer) -> None:
    from gateway.identity import IssuerUnavailable
    from tests.support.processes import free_port

    token = issuer.token()

    async def use(verifier: Verifier) -> str:
        with pytest.raises(IssuerUnavailable) as caught:
            await verifier.bearer(token)
        return str(caught.value)

    reason = with_verifier(issuer, use, jwks_url=f"http://127.0.0.1:{free_port()}/keys.json")
    assert reason.startswith("fetching http://127.0.0.1:") and "ConnectError" in reason
