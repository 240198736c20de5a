"""The deployment examples under gateway/deploy/ stay consistent with the gateway: the policies load, the
variables and options are the ones the gateway reads, the proxy points at the compose replicas."""

from __future__ import annotations

import re
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
