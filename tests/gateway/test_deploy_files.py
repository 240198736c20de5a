"""The deployment examples under gateway/deploy/ stay consistent with the gateway: the policies load, the
variables and options are the ones the gateway reads, the proxy points at the compose replicas."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import yaml

from gateway import cli
from gateway.policy import load, parse

DEPLOY = Path(__file__).resolve().parents[2] / "gateway" / "deploy"


def test_the_example_policy_loads() -> None:
    policy = load(DEPLOY / "policy.example.yaml")
    assert [rule.name for rule in policy.rules] == [
        "data-pipelines pull requests",
        "data-pipelines main",
        "production environment",
    ]


def test_compose_runs_two_replicas_behind_a_proxy_with_secrets_from_the_environment() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "worker", "gateway-a", "gateway-b", "proxy"}
    assert "ports" not in services["prefect-server"]  # reachable only through the gateway
    for name in ("gateway-a", "gateway-b"):
        gateway = services[name]
        assert set(gateway["environment"]) == {cli.AUTH_STRING_VARIABLE, cli.SIGNING_KEY_VARIABLE}
        assert all(value.startswith("${") for value in gateway["environment"].values())
        assert gateway["command"][:2] == ["--policy", "/etc/prefect-gateway/policy.yaml"]
        cli.parser().parse_args(gateway["command"])
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert set(re.findall(r"server (gateway-[ab]):8080", nginx)) == {"gateway-a", "gateway-b"}
    assert "proxy_set_header Upgrade $http_upgrade" in nginx


def test_kubernetes_sketch_uses_the_gateways_settings_and_probes() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in documents}
    assert set(kinds) == {"ConfigMap", "Deployment", "Service", "Ingress", "NetworkPolicy"}
    parse(yaml.safe_load(kinds["ConfigMap"]["data"]["policy.yaml"]))
    [container] = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {env["name"] for env in container["env"]} == {cli.AUTH_STRING_VARIABLE, cli.SIGNING_KEY_VARIABLE}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    cli.parser().parse_args(container["args"])


def test_the_readme_policy_and_step_are_valid() -> None:
    readme = (DEPLOY.parents[1] / "README.md").read_text()
    section = readme.split("## Self-hosted Prefect without a shared password", 1)[1].split("\n## ", 1)[0]
    blocks = [textwrap.dedent(b) for b in re.findall(r"```yaml\n(.*?)```", section, flags=re.S)]
    policy = next(yaml.safe_load(b) for b in blocks if b.lstrip().startswith("issuer:"))
    assert len(parse(policy).rules) == 3
    step = next(yaml.safe_load(b) for b in blocks if "pipe: org/prefect-trigger" in b)[0]["step"]
    assert step["oidc"]["audiences"] == policy["audiences"]
    assert step["script"][0]["variables"]["PREFECT_API_AUTH_STRING"] == "bearer:${BITBUCKET_STEP_OIDC_TOKEN}"
    exchange = next(yaml.safe_load(b) for b in blocks if "TOKEN_EXCHANGE_URL" in b)["variables"]
    assert exchange["TOKEN_EXCHANGE_URL"].removesuffix("/token") == exchange["PREFECT_API_URL"].removesuffix("/api")
    assert "PREFECT_CLIENT_CUSTOM_HEADERS" not in exchange  # the pipe identifies its streams itself
