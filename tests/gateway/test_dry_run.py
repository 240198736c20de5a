"""DRY_RUN with TOKEN_EXCHANGE_URL at a gateway prints the policy rule this step needs; pasted into a
policy, that rule grants exactly this step's deployments to this repository and branch."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
import yaml

from gateway.policy import parse
from pipe import config
from pipe.errors import ConfigError
from pipe.identity.gateway_rule import behind_gateway, denial, lines, literal, rights, step_globs
from tests.gateway.conftest import AUDIENCE, ENVIRONMENT, REPO, GatewayProcess, LoopbackIssuer, gateway_env
from tests.support.pipe import plain, run_pipe

GATEWAY = "https://gw.example.com"


def variables(token: str, **extra: Any) -> config.Config:
    """The step's Config, as the pipe loads it."""
    return config.load(
        {
            "PREFECT_API_URL": f"{GATEWAY}/api",
            "TOKEN_EXCHANGE_URL": f"{GATEWAY}/token",
            "BITBUCKET_STEP_OIDC_TOKEN": token,
            "ACTION": "run",
            "DEPLOYMENT": "etl/nightly",
            **extra,
        }
    )


BUILD = {
    "PREFECT_API_URL": f"{GATEWAY}/api",
    "BITBUCKET_COMMIT": "0f3c1e2d4b5a69788796a5b4c3d2e1f00f1e2d3c",
    "BITBUCKET_BRANCH": "feature/x",
    "BITBUCKET_REPO_FULL_NAME": "acme/etl",
    "BITBUCKET_WORKSPACE": "acme",
    "BITBUCKET_REPO_SLUG": "etl",
    "BITBUCKET_BUILD_NUMBER": "3",
    "REPORT": "false",
}


def gatewayed(api: str, exchange: str) -> bool:
    try:
        loaded = config.load({"PREFECT_API_URL": api, "TOKEN_EXCHANGE_URL": exchange, "DEPLOYMENT": "etl/nightly"})
    except ConfigError:  # plain http to a remote host is refused before anything else
        return False
    return behind_gateway(loaded)


def pasted_rule(printed: list[str]) -> dict[str, Any]:
    rule = yaml.safe_load("\n".join(line[2:] for line in printed[1:4]))
    assert isinstance(rule, list) and len(rule) == 1
    return dict(rule[0])


def test_the_printed_rule_grants_this_branch_its_deployments(issuer: LoopbackIssuer) -> None:
    printed = lines(variables(issuer.token(branchName="release/2")), ["etl/nightly", "etl/hourly"])
    assert printed[0].startswith(f"Gateway policy rule for this step (repository {REPO}, branch release/2, ACTION=run)")
    rule = pasted_rule(printed)
    assert rule["when"] == {"repositoryUuid": REPO, "branchName": "release/2"}
    assert rule["allow"] == {"read": True, "run": ["etl/hourly", "etl/nightly"]}
    policy = parse({"issuer": issuer.url, "audiences": [AUDIENCE], "upstream": "http://p:4200/api", "rules": [rule]})
    grant = policy.grant({"repositoryUuid": REPO, "branchName": "release/2"})
    assert grant.may_run("etl/nightly") and not grant.may_run("etl/other") and not grant.deploy
    assert policy.grant({"repositoryUuid": REPO, "branchName": "main"}).empty
    assert len(printed) == 4  # the token already has the gateway's audience


def test_an_environment_pins_the_rule_and_deploy_and_run_adds_deploy(issuer: LoopbackIssuer) -> None:
    token = issuer.token(deploymentEnvironmentUuid=ENVIRONMENT, aud="ari:cloud:bitbucket::workspace/x")
    printed = lines(variables(token, ACTION="deploy-and-run"), ["etl/production"])
    rule = pasted_rule(printed)
    assert rule["when"] == {"repositoryUuid": REPO, "deploymentEnvironmentUuid": ENVIRONMENT}
    assert rule["allow"]["deploy"] == ["etl/production"]
    assert "oidc: audiences:" in printed[-1]


@pytest.mark.parametrize(
    ("extra", "allow"),
    [
        ({"ACTION": "run"}, {"read": True, "run": ["etl/a"]}),
        ({"ACTION": "deploy"}, {"read": True, "deploy": ["etl/a"]}),
        ({"ACTION": "deploy-and-run"}, {"read": True, "run": ["etl/a"], "deploy": ["etl/a"]}),
        ({"ACTION": "preview", "BITBUCKET_PR_ID": "7"}, {"read": True, "deploy": ["etl/a"]}),
        (
            {"ACTION": "preview", "BITBUCKET_PR_ID": "7", "PREVIEW_RUN": "true"},
            {"read": True, "run": ["etl/a"], "deploy": ["etl/a"]},
        ),
        (
            {"ACTION": "cleanup-previews", "PREVIEW_TTL_DAYS": "7", "PREVIEW_NAME": "{deployment}-{branch}-pr-{pr}"},
            {"read": True, "run": ["*/*-*-pr-*"], "deploy": ["*/*-*-pr-*"]},
        ),
    ],
    ids=["run", "deploy", "deploy-and-run", "preview", "preview and run", "cleanup"],
)
def test_each_action_is_granted_what_it_does(extra: dict[str, str], allow: dict[str, Any]) -> None:
    step = {**BUILD, **extra}
    if extra["ACTION"] in ("run", "deploy-and-run"):
        step["DEPLOYMENT"] = "etl/a"
    loaded = config.load(step)
    assert rights(loaded, ["etl/a"]) == allow


@pytest.mark.parametrize(
    ("extra", "globs"),
    [
        ({"ACTION": "run", "DEPLOYMENT": "etl/daily[eu]?"}, ["etl/daily[[]eu[]][?]"]),
        ({"ACTION": "run", "DEPLOYMENT": "0f3c1e2d-4b5a-4978-8796-a5b4c3d2e1f0"}, None),
        ({"ACTION": "deploy", "DEPLOYMENT": "etl/*"}, ["etl/*"]),
        ({"ACTION": "deploy", "DEPLOYMENT": "nightly"}, ["*/nightly"]),
        ({"ACTION": "deploy"}, ["*"]),
        ({"ACTION": "preview", "BITBUCKET_PR_ID": "7", "DEPLOYMENT": "etl/daily"}, ["etl/daily-pr-7"]),
        (
            {"ACTION": "preview", "BITBUCKET_PR_ID": "7", "PREVIEW_NAME": "{deployment}-{branch}-{pr}"},
            ["*/*-feature-x-7"],
        ),
        ({"ACTION": "cleanup-previews", "PREVIEW_TTL_DAYS": "7"}, []),
    ],
    ids=["run names", "run ids", "deploy glob", "deploy bare name", "deploy all", "preview", "preview all", "cleanup"],
)
def test_the_deployments_a_step_names_are_known_before_any_call(extra: dict[str, str], globs: list[str] | None) -> None:
    loaded = config.load({**BUILD, **extra})
    assert step_globs(loaded) == globs
    for glob in globs or []:
        if "[" in glob:
            assert fnmatch.fnmatchcase("etl/daily[eu]?", glob) and not fnmatch.fnmatchcase("etl/dailye?", glob)


def test_the_clean_ups_rule_matches_every_preview_name_and_only_those() -> None:
    loaded = config.load(
        {**BUILD, "ACTION": "cleanup-previews", "PREVIEW_TTL_DAYS": "7", "PREVIEW_NAME": "[pv]{deployment}-{pr}"}
    )
    (glob,) = rights(loaded, [])["deploy"]
    assert fnmatch.fnmatchcase("etl/[pv]daily-12", glob) and not fnmatch.fnmatchcase("etl/pdaily-12", glob)
    assert literal("a*b") == "a[*]b"


def test_a_bearer_auth_string_is_the_gateways_too(issuer: LoopbackIssuer) -> None:
    loaded = config.load(
        {**BUILD, "DEPLOYMENT": "etl/a", "PREFECT_API_AUTH_STRING": f"bearer:{issuer.token(branchName='main')}"}
    )
    assert behind_gateway(loaded)
    printed = lines(loaded, ["etl/a"])
    assert pasted_rule(printed)["when"] == {"repositoryUuid": REPO, "branchName": "main"}
    assert not behind_gateway(config.load({**BUILD, "DEPLOYMENT": "etl/a", "PREFECT_API_AUTH_STRING": "admin:pw"}))


def test_the_gateways_answer_is_read_from_its_fields() -> None:
    """The 403 body the gateway sends (gateway/app.py), for a right whose text holds quotes."""
    right = "deploy: etl/x-pr-3, of a deployment tagged 'preview'"
    body = {
        "detail": "…",
        "missing_right": right,
        "claims": {"repositoryUuid": "{r}", "stepUuid": "{s}"},
        "rules": ["a (b)"],
    }
    denied = denial(body)
    assert denied is not None
    assert denied.message() == (
        f"the gateway denied this step the right '{right}' (claims: repositoryUuid={{r}}; the rules matching them "
        "(a (b)) do not grant it)"
    )
    assert denial({"detail": "forbidden"}) is None
    not_served = denial({**body, "missing_right": "none: this endpoint is not available through the gateway"})
    assert not_served is not None and "does not serve this request" in not_served.message()
    assert "outside the gateway" in not_served.fix


def test_the_gateways_denial_is_read_back_with_the_claims_a_rule_is_written_with() -> None:
    text = (
        "denied: this request needs the right 'run: etl/prod'; claims seen: repositoryUuid={r}, branchName=a, b, "
        "pipelineUuid={p}, stepUuid={s}, sub={r}:{s}; no rule matches them; add a rule for these claims to the "
        "gateway's policy"
    )
    denied = denial(f"Client error: {text}")
    assert denied is not None
    assert denied.message() == (
        "the gateway denied this step the right 'run: etl/prod' (claims: repositoryUuid={r}, branchName=a, b; "
        "no rule matches them)"
    )
    assert denial("403 Forbidden: forbidden") is None
    # The right as Python's repr quotes it when it holds a quote; a rule's name with parentheses.
    quoted = text.replace("'run: etl/prod'", "\"deploy: etl/x, of a deployment tagged 'preview'\"").replace(
        "no rule matches them", "the rules matching them (pull requests (all)) do not grant it"
    )
    again = denial(quoted)
    assert again is not None and again.right == "deploy: etl/x, of a deployment tagged 'preview'"
    assert again.rules == ["pull requests (all)"]


@pytest.mark.parametrize(
    ("api", "exchange"),
    [
        ("https://prefect.example.com/api", "https://idp.example.com/token"),
        ("https://gw.example.com/api", "https://gw.example.com/oauth2/v1/token-exchange"),
        ("https://gw.example.com/api", "http://gw.example.com/token"),
    ],
)
def test_other_token_exchanges_print_no_gateway_rule(api: str, exchange: str) -> None:
    assert not gatewayed(api, exchange)
    assert gatewayed("https://x.example.com/gw/api/", "https://x.example.com/gw/token")


@pytest.mark.prefect
def test_pipe_dry_run_through_the_gateway_prints_the_rule(
    pipe_env: dict[str, str], gateway: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    env = {**gateway_env(pipe_env, gateway, issuer.token()), "DRY_RUN": "true"}
    result = run_pipe(env, timeout=120)
    assert result.code == 0, result
    printed = plain(result.output)
    assert f"Gateway policy rule for this step (repository {REPO}, branch main, ACTION=run)" in printed, result
    assert 'allow: {"read": true, "run": ["greet/ci"]}' in printed, result


@pytest.mark.prefect
def test_a_repository_no_rule_matches_gets_its_rule_before_the_refusal(
    pipe_env: dict[str, str], gateway: GatewayProcess, issuer: LoopbackIssuer
) -> None:
    """The gateway refuses the token exchange itself when no rule matches: the rule is printed first."""
    unknown = "{77777777-0000-4000-8000-000000000077}"
    env = {**gateway_env(pipe_env, gateway, issuer.token(repositoryUuid=unknown)), "DRY_RUN": "true"}
    result = run_pipe(env, timeout=120)
    assert result.code == 1, result
    printed = plain(result.output)
    rule, refusal = printed.index(f'when: {{"repositoryUuid": "{unknown}", "branchName": "main"}}'), printed.index("✖")
    assert rule < refusal and "no rule of the gateway's policy matches these claims" in printed[refusal:], result
    assert "Add a rule for this repository to the gateway's policy" in printed[refusal:], result
