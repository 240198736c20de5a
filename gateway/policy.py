"""The policy file: who (claims of the caller's identity) may do what (rights), default deny.

```yaml
issuer: https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc
audiences: ["prefect-gateway.acme.example"]
upstream: http://prefect-server:4200/api
rules:
  - name: data-pipelines main
    when: {repositoryUuid: "{1111…}", branchName: main}
    allow: {read: true, run: ["etl/*"], deploy: ["etl/*"]}
```

Every rule whose ``when`` matches the caller's claims (exactly, or by glob) adds its rights. The file is
validated once at start; every mistake is reported on its own line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import PolicyError

# Claims a rule may test (Bitbucket Pipelines' step token claims).
CLAIMS = (
    "repositoryUuid",
    "workspaceUuid",
    "branchName",
    "deploymentEnvironmentUuid",
    "pipelineUuid",
    "stepUuid",
    "sub",
)
# Claims quoted in audit lines and denials (never the token).
SHOWN_CLAIMS = ("repositoryUuid", "branchName", "deploymentEnvironmentUuid", "pipelineUuid", "stepUuid", "sub")
# Asymmetric algorithms only: an issuer's token is never checked with a shared secret, never unsigned.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
GLOB_CHARS = frozenset("*?[")
TOP_KEYS = frozenset(
    {"issuer", "jwks_url", "audiences", "algorithms", "upstream", "leeway_seconds", "jwks_refetch_seconds", "session"}
    | {"rules"}
)
SESSION_KEYS = frozenset({"lifetime_seconds", "max_beyond_subject_seconds"})
RULE_KEYS = frozenset({"name", "when", "allow", "i_mean_every_repository"})
ALLOW_KEYS = frozenset({"read", "run", "deploy"})


@dataclass(frozen=True)
class Rule:
    name: str
    when: Mapping[str, str]
    read: bool = False
    run: tuple[str, ...] = ()
    deploy: tuple[str, ...] = ()

    def matches(self, claims: Mapping[str, Any]) -> bool:
        for claim, pattern in self.when.items():
            value = claims.get(claim)
            if not isinstance(value, str) or not (value == pattern or fnmatchcase(value, pattern)):
                return False
        return True


@dataclass(frozen=True)
class Grant:
    """The rights of one caller: the union of every matching rule."""

    rules: tuple[str, ...] = ()
    read: bool = False
    run: tuple[str, ...] = ()
    deploy: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.read or self.run or self.deploy)

    def may_run(self, deployment: str) -> bool:
        return any(fnmatchcase(deployment, glob) for glob in self.run)

    def may_deploy(self, deployment: str) -> bool:
        return any(fnmatchcase(deployment, glob) for glob in self.deploy)

    def may_deploy_flow(self, flow: str) -> bool:
        """Whether some deploy glob covers deployments of this flow (``etl/*`` covers flow ``etl``)."""
        return any(glob == "*" or fnmatchcase(flow, glob.split("/", 1)[0]) for glob in self.deploy)


@dataclass(frozen=True)
class Policy:
    issuer: str
    audiences: tuple[str, ...]
    upstream: str
    rules: tuple[Rule, ...]
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: int = 30
    jwks_refetch_seconds: int = 60
    session_lifetime_seconds: int = 3600
    session_max_beyond_subject_seconds: int = 0
    source: str = field(default="", compare=False)

    def grant(self, claims: Mapping[str, Any]) -> Grant:
        names: list[str] = []
        read = False
        run: list[str] = []
        deploy: list[str] = []
        for rule in self.rules:
            if rule.matches(claims):
                names.append(rule.name)
                read = read or rule.read
                run += [g for g in rule.run if g not in run]
                deploy += [g for g in rule.deploy if g not in deploy]
        return Grant(tuple(names), read, tuple(run), tuple(deploy))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problem(url: str, *, plain_http_ok: bool = False) -> str | None:
    """Why ``url`` cannot be used, or None. ``http://`` only to this machine unless ``plain_http_ok``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.username or parts.password:
        return f"{url!r} carries credentials; the gateway takes credentials from the environment only"
    if parts.query or parts.fragment:
        return f"{url!r} has a query or fragment"
    if parts.scheme == "http" and not plain_http_ok and not is_loopback(parts.hostname):
        return f"{url!r} uses plain http to another machine; use https:// (http:// only on loopback)"
    return None


def load(path: str | Path) -> Policy:
    """Read and validate the policy file; raises :class:`PolicyError` listing every mistake."""
    import yaml

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(source, [f"cannot read the file ({exc.strerror or type(exc).__name__})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(source, [f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"]) from None
    return parse(data, source)


def parse(data: Any, source: str = "<policy>") -> Policy:
    problems: list[str] = []
    if not isinstance(data, dict):
        raise PolicyError(source, ["the file must be a mapping with issuer, audiences, upstream and rules"])
    for key in sorted(set(map(str, data)) - TOP_KEYS):
        problems.append(f"unknown key {key!r} (known: {', '.join(sorted(TOP_KEYS))})")

    issuer = _string(data, "issuer", problems, "the Bitbucket OIDC issuer URL of your workspace")
    if issuer and (why := url_problem(issuer)):
        problems.append(f"issuer: {why}")
    jwks_url = data.get("jwks_url")
    if jwks_url is not None and (not isinstance(jwks_url, str) or (why := url_problem(jwks_url))):
        problems.append(f"jwks_url: {why if isinstance(jwks_url, str) else 'must be a URL'}")
    upstream = _string(data, "upstream", problems, "the Prefect server's API URL, e.g. http://prefect-server:4200/api")
    if upstream and (why := url_problem(upstream, plain_http_ok=True)):
        problems.append(f"upstream: {why}")
    audiences: list[str] = []
    if "audiences" not in data:
        problems.append("audiences: missing; list the audience your steps ask for (oidc: audiences: [...])")
    elif data["audiences"] == []:
        problems.append("audiences: list at least one audience (the one your steps ask for with oidc: audiences)")
    else:
        audiences = _strings(data["audiences"], "audiences", problems)
    algorithms = _strings(data.get("algorithms", ["RS256"]), "algorithms", problems)
    for alg in algorithms:
        if alg not in ASYMMETRIC_ALGORITHMS:
            problems.append(
                f"algorithms: {alg!r} is not allowed; use asymmetric ones: {', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
    leeway = _int(data, "leeway_seconds", 30, 0, 300, problems)
    refetch = _int(data, "jwks_refetch_seconds", 60, 1, 86400, problems)
    session = data.get("session", {})
    lifetime, beyond = 3600, 0
    if not isinstance(session, dict):
        problems.append("session: must be a mapping with lifetime_seconds and max_beyond_subject_seconds")
    else:
        for key in sorted(set(map(str, session)) - SESSION_KEYS):
            problems.append(f"session: unknown key {key!r} (known: {', '.join(sorted(SESSION_KEYS))})")
        lifetime = _int(session, "lifetime_seconds", 3600, 60, 86400, problems, "session.")
        beyond = _int(session, "max_beyond_subject_seconds", 0, 0, 86400, problems, "session.")

    rules: list[Rule] = []
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append("rules: missing or empty; without rules every request is denied")
    else:
        names: set[str] = set()
        for index, raw in enumerate(raw_rules):
            rule = _rule(raw, f"rules[{index}]", problems)
            if rule is None:
                continue
            if rule.name in names:
                problems.append(f"rules[{index}].name: {rule.name!r} is used twice; names appear in audit lines")
            names.add(rule.name)
            rules.append(rule)
    if problems:
        raise PolicyError(source, problems)
    assert issuer and upstream
    return Policy(
        issuer=issuer.rstrip("/"),
        audiences=tuple(audiences),
        upstream=upstream.rstrip("/"),
        rules=tuple(rules),
        jwks_url=jwks_url,
        algorithms=tuple(algorithms),
        leeway_seconds=leeway,
        jwks_refetch_seconds=refetch,
        session_lifetime_seconds=lifetime,
        session_max_beyond_subject_seconds=beyond,
        source=source,
    )


def _rule(raw: Any, where: str, problems: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with name, when and allow")
        return None
    before = len(problems)
    for key in sorted(set(map(str, raw)) - RULE_KEYS):
        problems.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(RULE_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}.name: missing; give every rule a name (it appears in audit lines)")
        name = where
    where = f"{where} ({name})"
    when = raw.get("when")
    conditions: dict[str, str] = {}
    if not isinstance(when, dict) or not when:
        problems.append(f"{where}.when: missing or empty; name the claims this rule matches, e.g. repositoryUuid")
    else:
        for claim, value in when.items():
            if claim not in CLAIMS:
                problems.append(f"{where}.when: unknown claim {claim!r} (known: {', '.join(CLAIMS)})")
            elif not isinstance(value, str) or not value:
                problems.append(f'{where}.when.{claim}: must be a non-empty string (quote UUIDs: "{{...}}")')
            else:
                conditions[str(claim)] = value
    allow = raw.get("allow")
    read = False
    run: tuple[str, ...] = ()
    deploy: tuple[str, ...] = ()
    if not isinstance(allow, dict) or not allow:
        problems.append(f"{where}.allow: missing or empty; grant read: true, run: [globs] and/or deploy: [globs]")
    else:
        for key in sorted(set(map(str, allow)) - ALLOW_KEYS):
            problems.append(f"{where}.allow: unknown right {key!r} (known: read, run, deploy)")
        read_value = allow.get("read", False)
        if not isinstance(read_value, bool):
            problems.append(f"{where}.allow.read: must be true or false")
        read = read_value is True
        run = tuple(_globs(allow.get("run", []), f"{where}.allow.run", problems))
        deploy = tuple(_globs(allow.get("deploy", []), f"{where}.allow.deploy", problems))
    every = raw.get("i_mean_every_repository", False)
    if not isinstance(every, bool):
        problems.append(f"{where}.i_mean_every_repository: must be true or false")
    pinned = "repositoryUuid" in conditions and not GLOB_CHARS & set(conditions["repositoryUuid"])
    broad = bool(deploy) or any(g in ("*", "*/*") for g in run)
    if broad and not pinned and every is not True:
        granted = "deploy" if deploy else 'run: ["*"]'
        problems.append(
            f"{where}: grants {granted} to every repository of the workspace "
            "(no exact repositoryUuid in when); add the repository, or say i_mean_every_repository: true"
        )
    if len(problems) > before:
        return None
    return Rule(name=name, when=conditions, read=read, run=run, deploy=deploy)


def _globs(value: Any, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: must be a list of 'flow/deployment' globs, e.g. [\"etl/*\"]")
        return []
    globs: list[str] = []
    for glob in value:
        if glob != "*" and glob.count("/") != 1:
            problems.append(f"{where}: {glob!r} is not a 'flow/deployment' glob (e.g. 'etl/staging', 'etl/*' or '*')")
        else:
            globs.append(glob)
    return globs


def _string(data: Mapping[str, Any], key: str, problems: list[str], what: str) -> str | None:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{key}: missing; set it to {what}")
        return None
    return value.strip()


def _strings(value: Any, key: str, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{key}: must be a list of strings")
        return []
    return list(value)


def _int(
    data: Mapping[str, Any], key: str, default: int, low: int, high: int, problems: list[str], prefix: str = ""
) -> int:
    value: object = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{prefix}{key}: must be a whole number of seconds from {low} to {high}")
        return default
    return value
