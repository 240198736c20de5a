"""Policy loading: every mistake is one line naming where it is and the fix; grants add up; default deny."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.errors import PolicyError
from gateway.policy import load, parse
from tests.support.pipe import ROOT

REPO = "{11111111-0000-4000-8000-000000000001}"
ENV = "{22222222-0000-4000-8000-000000000002}"


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "issuer": "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
        "audiences": ["prefect-gateway.acme.example"],
        "upstream": "http://prefect-server:4200/api",
        "rules": [
            {"name": "prs", "when": {"repositoryUuid": REPO}, "allow": {"read": True, "run": ["etl/staging"]}},
            {
                "name": "main",
                "when": {"repositoryUuid": REPO, "branchName": "main"},
                "allow": {"read": True, "run": ["etl/*"], "deploy": ["etl/*"]},
            },
            {
                "name": "production",
                "when": {"repositoryUuid": REPO, "deploymentEnvironmentUuid": ENV},
                "allow": {"run": ["etl/production"], "deploy": ["etl/production"]},
            },
        ],
    }
    base.update(changes)
    return base


def problems(data: Any) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse(data, "policy.yaml")
    return caught.value.problems


def test_the_issue_example_loads_and_grants_add_up() -> None:
    policy = parse(document())
    pr = policy.grant({"repositoryUuid": REPO, "branchName": "feature/x"})
    assert pr.rules == ("prs",) and pr.read and pr.may_run("etl/staging") and not pr.may_run("etl/production")
    assert not pr.deploy
    main = policy.grant({"repositoryUuid": REPO, "branchName": "main"})
    assert main.rules == ("prs", "main") and main.may_run("etl/production") and main.may_deploy("etl/x")
    prod = policy.grant({"repositoryUuid": REPO, "branchName": "release", "deploymentEnvironmentUuid": ENV})
    assert prod.may_deploy("etl/production") and not prod.may_deploy("etl/staging")
    other = policy.grant({"repositoryUuid": "{99999999-0000-4000-8000-000000000009}", "branchName": "main"})
    assert other.empty and other.rules == ()


def test_when_matches_globs_and_missing_claims_never_match() -> None:
    rule = {"name": "releases", "when": {"repositoryUuid": REPO, "branchName": "release/*"}, "allow": {"read": True}}
    policy = parse(document(rules=[rule]))
    assert policy.grant({"repositoryUuid": REPO, "branchName": "release/1.2"}).read
    assert not policy.grant({"repositoryUuid": REPO, "branchName": "main"}).read
    assert not policy.grant({"repositoryUuid": REPO}).read  # a tag build has no branchName


def test_each_mistake_is_its_own_line() -> None:
    found = problems(
        {
            "issuer": "http://issuer.example.com/oidc",
            "audiences": [],
            "upstream": "ftp://x",
            "color": "blue",
            "algorithms": ["HS256", "none"],
            "rules": [
                {"name": "a", "when": {"repoUuid": "x"}, "allow": {"read": "yes"}},
                {"name": "b", "when": {"repositoryUuid": REPO}, "allow": {"run": "etl/*", "admin": True}},
                {"name": "b", "when": {"repositoryUuid": REPO}, "allow": {"run": ["etl"]}},
            ],
        }
    )
    text = "\n".join(found)
    assert "unknown key 'color'" in text
    assert "issuer: 'http://issuer.example.com/oidc' uses plain http to another machine" in text
    assert "upstream: 'ftp://x' is not an http(s) URL" in text
    assert "audiences: list at least one audience" in text
    assert "algorithms: 'HS256' is not allowed" in text and "algorithms: 'none' is not allowed" in text
    assert "rules[0] (a).when: unknown claim 'repoUuid'" in text
    assert "rules[0] (a).allow.read: must be true or false" in text
    assert "rules[1] (b).allow.run: must be a list of 'flow/deployment' globs" in text
    assert "rules[1] (b).allow: unknown right 'admin'" in text
    assert "rules[2] (b).allow.run: 'etl' is not a 'flow/deployment' glob" in text
    assert len(found) == len(set(found)) >= 10


@pytest.mark.parametrize(
    "allow",
    [{"deploy": ["etl/*"]}, {"run": ["*"]}, {"run": ["*/*"]}],
    ids=["deploy", "run-star", "run-star-star"],
)
def test_a_rule_for_every_repository_needs_to_say_so(allow: dict[str, Any]) -> None:
    rule = {"name": "everyone", "when": {"branchName": "main"}, "allow": allow}
    [problem] = problems(document(rules=[rule]))
    assert "to every repository of the workspace" in problem and "i_mean_every_repository: true" in problem
    parse(document(rules=[{**rule, "i_mean_every_repository": True}]))
    globbed = {"name": "globbed", "when": {"repositoryUuid": "*"}, "allow": allow}
    assert "every repository" in problems(document(rules=[globbed]))[0]


def test_scoped_run_needs_no_repository_condition() -> None:
    parse(document(rules=[{"name": "staging runs", "when": {"branchName": "main"}, "allow": {"run": ["etl/staging"]}}]))


def test_no_rules_is_refused() -> None:
    assert any("rules: missing or empty" in p for p in problems(document(rules=[])))


def test_plain_http_issuer_only_on_loopback() -> None:
    parse(document(issuer="http://127.0.0.1:8080/oidc"))
    assert "plain http" in problems(document(jwks_url="http://keys.example.com/keys.json"))[0]


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("issuer: [\n  unclosed\nrules:\n")
    with pytest.raises(PolicyError) as caught:
        load(path)
    assert "not valid YAML at line" in caught.value.problems[0]


def run_gateway(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SECRETS = {"PREFECT_GATEWAY_UPSTREAM_AUTH_STRING": "admin:pw-123456789", "PREFECT_GATEWAY_SIGNING_KEY": "s" * 40}


def test_start_up_exits_1_with_one_line_per_mistake(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document(audiences="x", rules=[{"name": "r", "when": {}, "allow": {}}])))
    done = run_gateway(["--policy", str(path)], SECRETS)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith(f"✖ policy {path}: ") for line in lines), done.stderr
    assert len(lines) == 3 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PREFECT_GATEWAY_SIGNING_KEY": "s" * 40}, "✖ PREFECT_GATEWAY_UPSTREAM_AUTH_STRING is not set"),
        ({"PREFECT_GATEWAY_UPSTREAM_AUTH_STRING": "admin:pw"}, "✖ PREFECT_GATEWAY_SIGNING_KEY is not set"),
        (
            {**SECRETS, "PREFECT_GATEWAY_SIGNING_KEY": "k3y-xyz"},
            "✖ PREFECT_GATEWAY_SIGNING_KEY is shorter than 32 bytes",
        ),
    ],
    ids=["no-auth-string", "no-signing-key", "short-key"],
)
def test_start_up_secrets_come_from_the_environment(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document()))
    done = run_gateway(["--policy", str(path)], env)
    assert done.returncode == 1 and done.stderr.startswith(expected), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "pw" not in done.stderr and "k3y-xyz" not in done.stderr
