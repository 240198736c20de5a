"""Deploy: Prefect's own ``prefect deploy`` on the repository's prefect.yaml, for the commit being built.

The pipe does not re-implement deploying: it runs the Prefect CLI of its image as a subprocess, in
the clone, never prompting. Around it the pipe does what a build step needs:

* **Fail early, create nothing.** The prefect.yaml is read here first (PyYAML): missing file, YAML
  errors, no ``deployments``, a ``DEPLOYMENT`` selection that matches nothing (the message lists what
  is there), an entrypoint file that is missing or does not parse, no work pool, a work pool the API
  does not know — each is one line before the CLI starts. Prefect deploys several deployments one
  after the other and stops at the first failure, so these checks are what keeps a bad file from
  leaving half of its deployments updated.
* **Select here, deploy exactly that.** ``DEPLOYMENT`` is a ``flow/deployment`` name, a bare
  deployment name, or a glob (``etl/*``, ``*/prod``). The flow part matches the flow's name as
  Prefect registers it (``@flow(name=...)``, else the function name with ``_`` → ``-``) or the
  function name. Prefect's own ``--name`` matching knows only the function name, so the pipe hands
  the CLI a copy of the prefect.yaml holding just the selected deployments and runs ``--all``.
* **Tie the deployment to the commit.** That copy (in a temporary directory; the repository's file is
  never touched) adds the tags ``deploy-commit:<sha7>`` and ``deploy-build:<n>`` to each selected
  deployment and, when the file sets no ``version``, the version ``<sha8>`` — what Prefect itself
  derives from ``BITBUCKET_COMMIT`` when ``git`` works in the clone (its ``vcs:bitbucket`` version
  info needs ``git log``, which the pipe's image does not have). CLI options could not do this: with
  several deployments Prefect ignores them, and ``--tag``/``--description`` replace the file's values.
  Prefect resolves ``{{ $BITBUCKET_COMMIT }}`` in pull steps at deploy time, so a ``git_clone`` pull
  step pins the worker to this commit; a ``{{ $BITBUCKET_... }}`` placeholder in a pull step that this
  build does not set is an error (the worker would silently clone the default branch instead).
* **Minimal environment.** The CLI gets PATH/HOME/locale/proxy/CA settings, Bitbucket's non-secret
  ``BITBUCKET_*`` variables, the API URL and the credential (as ``PREFECT_API_KEY`` or
  ``PREFECT_API_AUTH_STRING``), the short-lived cloud credentials obtained through OIDC, and variables
  the prefect.yaml names as ``{{ $NAME }}`` — never another secret of the step.
* **Readable output.** The CLI prints plain text (no colours, no wrapping, no panels) into the build
  log line by line, masked; a traceback is reduced to its exception line unless ``DEBUG``. A failure
  is one :class:`~pipe.errors.DeployError` line with Prefect's own message and the fix.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import copy
import fnmatch
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from pipe import console
from pipe.config import Config, DeploymentRef
from pipe.credentials import Credential
from pipe.errors import DeployError
from pipe.metadata import CommitMetadata
from pipe.secret import mask

DEFAULT_PREFECT_FILE = "prefect.yaml"
MAX_PREFECT_FILE_BYTES = 1024 * 1024
# Seconds the CLI gets to exit after SIGTERM (a build step may be running) before SIGKILL.
KILL_GRACE_SECONDS = 5.0
PREFIX = "prefect deploy │"

# Copied from the step's environment as they are: nothing secret, and what Prefect, git and build
# steps need to work (locale, CA bundles, proxies, a Docker engine, cloud regions).
_PASS_THROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "CI",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "PREFECT_HOME",
    "PREFECT_PROFILES_PATH",
    "PREFECT_API_SSL_CERT_FILE",
    "PREFECT_API_TLS_INSECURE_SKIP_VERIFY",
    "PREFECT_DEPLOYMENTS_DEFAULT_WORK_POOL_NAME",
    "PREFECT_LOGGING_LEVEL",
)
_PASS_PREFIXES = ("BITBUCKET_", "AWS_ENDPOINT_URL")
# Names that hold credentials (BITBUCKET_STEP_OIDC_TOKEN, BITBUCKET_ACCESS_TOKEN, *_APP_PASSWORD, ...):
# never copied, whatever their prefix.
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|PRIVATE|CREDENTIAL|AUTH|(^|_)KEY($|_)", re.IGNORECASE)
# Plain, unwrapped text from the CLI (Rich honours these), no prompts, no telemetry from CI, and no
# __pycache__ left in the clone when Prefect imports the flow (later steps may package the clone).
_CLI_SETTINGS = {
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_CLI_WRAP_LINES": "false",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "COLUMNS": "500",
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "DO_NOT_TRACK": "1",
    "GIT_TERMINAL_PROMPT": "0",
}

# Prefect's template syntax for environment variables: {{ $NAME }}.
_ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_CREATED = re.compile(r"Deployment '(.+?)' successfully created with id '([0-9a-fA-F-]{36})'")
_BOX_CHARS = frozenset("╭╮╰╯─│━┃┏┓┗┛═║╔╗╚╝ ")
_CHAIN_LINES = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
_MORE_INFO = re.compile(r"\s*-\s*For more information check: \S+\s*$")


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of the prefect.yaml's ``deployments`` list, as the pipe sees it."""

    index: int  # position in the file's list
    name: str  # the deployment's name (environment placeholders resolved)
    entrypoint: str
    flow_names: tuple[str, ...]  # the flow's registered name first, then the names derived from the function
    work_pool: str | None
    # Why it cannot be deployed (missing entrypoint file, syntax error, no work pool, ...): an error
    # only when the deployment is selected, so one broken entry does not block deploying the others.
    problem: tuple[str, str] | None = None  # (message, fix)

    @property
    def label(self) -> str:
        return f"{self.flow_names[0]}/{self.name}" if self.flow_names else self.name


@dataclass
class Project:
    """The prefect.yaml of the repository."""

    root: Path  # the clone: the CLI's working directory; entrypoints are relative to it
    path: Path
    shown: str  # the path as the user wrote it (PREFECT_FILE), for messages
    document: dict[str, Any]
    deployments: list[DeploymentSpec]


@dataclass
class CliOutput:
    """The CLI's output, cleaned, as it streamed by."""

    debug: bool
    lines: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)  # the last line of each traceback, in order
    deployed: list[str] = field(default_factory=list)  # 'flow/deployment' of each one created or updated
    hidden: int = 0
    _in_traceback: bool = False

    def feed(self, raw: str) -> None:
        line = _unbox(raw)
        if line is None:
            return
        self.lines.append(line)
        if match := _CREATED.search(line):
            self.deployed.append(match.group(1))
        if line.startswith("Traceback (most recent call last):"):
            self._in_traceback = True
            self._hide(line)
            return
        if self._in_traceback:
            if not line.strip() or line[:1].isspace():
                self._hide(line)
                return
            self._in_traceback = False
            self.exceptions.append(line)
        elif line in _CHAIN_LINES:
            self._hide(line)
            return
        if line.strip():
            console.plain(f"{PREFIX} {line}")

    def _hide(self, line: str) -> None:
        if self.debug:
            if line.strip():
                console.plain(f"{PREFIX} {line}")
        else:
            self.hidden += 1


@dataclass
class CliResult:
    code: int | None  # None when the pipe stopped the CLI
    output: CliOutput
    timed_out: bool = False
    cancelled: bool = False


def deploy(config: Config, credential: Credential, *, cancel: threading.Event | None = None) -> list[str]:
    """Run ``prefect --no-prompt deploy`` on the repository's prefect.yaml; return the deployed names
    (``flow/deployment``, as Prefect registered them).

    ``cancel`` (set from another thread, e.g. when the step is stopped) ends the CLI early. With
    ``DRY_RUN`` everything is checked (file, selection, work pools) and nothing is deployed; the
    names returned are the expected ones. Raises :class:`DeployError` with one line (Prefect's
    message and the fix) on any failure; ``TIMEOUT`` bounds the CLI.
    """
    meta = CommitMetadata.from_env(config.env)
    root = clone_dir(config)
    env = subprocess_env(config, credential, root)
    project = load_project(config, root, env)
    selected = select(project, config)
    document = derived_document(project, selected, meta)
    _check_placeholders(project, document, env, config.env)
    _warn_without_pull_steps(project, selected, document)
    _check_work_pools(config, credential, project, selected)

    labels = ", ".join(spec.label for spec in selected)
    versions = sorted({str(_resolve_env(e.get("version"), env)) for e in document["deployments"] if e.get("version")})
    version_note = f" (version {', '.join(versions)})" if versions else ""
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=4096)
    if config.dry_run:
        console.info(f"DRY_RUN: {project.shown} checked; would deploy {labels}{version_note}; nothing was deployed")
        console.plain(f"prefect --no-prompt deploy --all would read:\n{text.rstrip()}")
        return [spec.label for spec in selected]
    console.info(
        f"Deploying {_count(len(selected), 'deployment')} of {project.shown} with prefect {_prefect_version()}: "
        f"{labels}{version_note}"
    )
    with tempfile.TemporaryDirectory(prefix="prefect-trigger-deploy-") as tmp:
        copy_path = Path(tmp) / project.path.name
        copy_path.write_text(text, "utf-8")
        argv = [
            sys.executable,
            "-P",  # never import a 'prefect' directory of the repository instead of Prefect
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(copy_path),
        ]
        result = run_cli(argv, env, root, float(config.timeout), config.debug, cancel)

    output = result.output
    if output.hidden:
        console.info("Prefect's traceback is hidden; DEBUG=true shows it")
    done = f" (already deployed: {', '.join(output.deployed)})" if output.deployed else ""
    if result.cancelled:
        raise DeployError(f"prefect deploy was stopped{done}")
    if result.timed_out:
        raise DeployError(
            f"prefect deploy did not finish within TIMEOUT={config.timeout}s and was stopped{done}",
            "raise TIMEOUT, or look for a build or push step that hangs",
        )
    if result.code != 0:
        raise failure(output, project.shown, result.code, done)
    if len(output.deployed) != len(selected):
        missing = len(selected) - len(output.deployed)
        raise DeployError(
            f"prefect deploy exited 0 but reported {_count(len(output.deployed), 'deployment')} of "
            f"{len(selected)} ({missing} missing; deployed: {', '.join(output.deployed) or 'none'})",
            "see the prefect deploy output above",
        )
    console.info(f"Deployed {', '.join(output.deployed)}")
    return list(output.deployed)


# --------------------------------------------------------------------------------------------------
# Where things are


def clone_dir(config: Config) -> Path:
    text = config.env.get("BITBUCKET_CLONE_DIR", "").strip()
    root = Path(text) if text else Path.cwd()
    if not root.is_dir():
        raise DeployError(
            f"BITBUCKET_CLONE_DIR {text!r} is not a directory", "run the pipe in a step that clones the repository"
        )
    return root.resolve()


def prefect_file_setting(config: Config) -> str:
    value = config.variables.get("PREFECT_FILE") or config.env.get("PREFECT_FILE") or DEFAULT_PREFECT_FILE
    value = str(value).strip() or DEFAULT_PREFECT_FILE
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise DeployError("PREFECT_FILE contains control characters", "set it to a path such as 'prefect.yaml'")
    return value


def _prefect_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefect")
    except PackageNotFoundError:  # pragma: no cover - the image always has it
        return "(unknown version)"


# --------------------------------------------------------------------------------------------------
# Reading the prefect.yaml


def load_project(config: Config, root: Path, env: dict[str, str]) -> Project:
    """Read and check the prefect.yaml (PREFECT_FILE, relative to ``root``, the clone). Variables it
    names as ``{{ $NAME }}`` are added to ``env`` (the CLI's environment) when the step may pass them."""
    setting = prefect_file_setting(config)
    path, document = read_prefect_file(root, setting)
    pass_referenced_variables(config, document, env)
    project = Project(root=root, path=path, shown=setting, document=document, deployments=[])
    project.deployments = [_spec(project, index, entry, env) for index, entry in enumerate(document["deployments"])]
    return project


def read_prefect_file(root: Path, setting: str) -> tuple[Path, dict[str, Any]]:
    """The file's path and its YAML: one clear line for a missing file, broken YAML, no deployments."""
    path = Path(setting) if Path(setting).is_absolute() else root / setting
    shown = setting
    if not path.is_file():
        raise DeployError(
            f"{shown} was not found in the repository ({path})",
            "commit a prefect.yaml ('prefect init' writes one) or set PREFECT_FILE to its path relative to the repository root",
        )
    if path.stat().st_size > MAX_PREFECT_FILE_BYTES:
        raise DeployError(f"{shown} is larger than {MAX_PREFECT_FILE_BYTES // 1024} KiB", "check PREFECT_FILE")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DeployError(f"{shown} is not UTF-8 text", "check PREFECT_FILE") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeployError(
            f"{shown} is not valid YAML: {_yaml_problem(exc)}", "fix the YAML (indentation, quotes, ':' after keys)"
        ) from None
    fix = "give it a 'deployments:' list whose entries have a name, an entrypoint and a work_pool (see the README)"
    if not isinstance(document, dict):
        raise DeployError(f"{shown} is not a YAML mapping (it holds {_yaml_kind(document)})", fix)
    entries = document.get("deployments")
    if not entries:
        raise DeployError(f"{shown} has no deployments", fix)
    if not isinstance(entries, list):
        raise DeployError(f"{shown}: 'deployments' must be a list, not {_yaml_kind(entries)}", fix)
    return path, document


def _spec(project: Project, index: int, entry: Any, env: Mapping[str, str]) -> DeploymentSpec:
    shown = project.shown
    fallback = f"#{index + 1}"
    if not isinstance(entry, dict):
        return _broken(
            index,
            fallback,
            f"{shown}: deployment #{index + 1} is {_yaml_kind(entry)}, not a mapping",
            "give each deployment name, entrypoint and work_pool keys",
        )
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        return _broken(
            index,
            fallback,
            f"{shown}: deployment #{index + 1} has no name",
            "give it a 'name:' (Prefect skips unnamed deployments)",
        )
    name = str(_resolve_env(name.strip(), env))
    where = f"{shown}: deployment {name!r}"
    entrypoint = entry.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        return _broken(index, name, f"{where} has no entrypoint", "set 'entrypoint: path/to/file.py:flow_function'")
    entrypoint = str(_resolve_env(entrypoint.strip(), env))
    flow_names, problem = _flow_names(project.root, where, entrypoint)
    pool_config = entry.get("work_pool")
    pool = (pool_config.get("name") if isinstance(pool_config, dict) else None) or env.get(
        "PREFECT_DEPLOYMENTS_DEFAULT_WORK_POOL_NAME"
    )
    if problem is None and pool_config is not None and not isinstance(pool_config, dict):
        problem = (f"{where}: work_pool must be a mapping", "write 'work_pool: {name: <pool>}'")
    elif problem is None and not pool:
        problem = (f"{where} has no work pool", "set 'work_pool: {name: <pool>}' for it")
    elif problem is None and not isinstance(pool, str):
        problem = (f"{where}: work_pool.name must be text", "write 'work_pool: {name: <pool>}'")
    return DeploymentSpec(
        index=index,
        name=name,
        entrypoint=entrypoint,
        flow_names=flow_names,
        work_pool=str(_resolve_env(pool, env)) if isinstance(pool, str) else None,
        problem=problem,
    )


def _broken(index: int, name: str, message: str, fix: str) -> DeploymentSpec:
    return DeploymentSpec(index=index, name=name, entrypoint="", flow_names=(), work_pool=None, problem=(message, fix))


def _flow_names(root: Path, where: str, entrypoint: str) -> tuple[tuple[str, ...], tuple[str, str] | None]:
    """The names the entrypoint's flow can go by, its registered name first, and what is wrong with the
    entrypoint, if anything. Reads the file's syntax tree only (nothing is executed)."""
    if ":" in entrypoint:
        file_part, _, obj = entrypoint.rpartition(":")
    else:  # a module path: package.module.flow_function
        file_part, obj = "", entrypoint.rpartition(".")[2]
    func = obj.split(".")[0]
    last = obj.split(".")[-1]
    derived = tuple(dict.fromkeys([last.replace("_", "-"), last]))
    if not file_part:
        return derived, None
    path = Path(file_part) if Path(file_part).is_absolute() else root / file_part
    fix = "fix the entrypoint: path/to/file.py:flow_function, relative to the repository root"
    if not path.is_file():
        return derived, (f"{where}: entrypoint file {file_part!r} is not in the repository", fix)
    try:
        tree = ast.parse(path.read_bytes(), filename=file_part)
    except SyntaxError as exc:
        return derived, (
            f"{where}: {file_part} line {exc.lineno}: SyntaxError: {exc.msg}",
            "fix the flow file and commit it",
        )
    except ValueError as exc:  # null bytes
        return derived, (f"{where}: {file_part} cannot be parsed ({exc})", "fix the flow file and commit it")
    defined, star = _top_level_names(tree.body)
    if func not in defined:
        if star:
            return derived, None
        return derived, (f"{where}: {file_part} defines no {func!r} (entrypoint {entrypoint!r})", fix)
    declared = _declared_flow_name(defined[func]) if obj == func else None
    return tuple(dict.fromkeys([*([declared] if declared else []), *derived])), None


def _top_level_names(body: list[ast.stmt]) -> tuple[dict[str, ast.AST], bool]:
    names: dict[str, ast.AST] = {}
    star = False
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names[sub.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    star = True
                else:
                    names[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            for block in _blocks(node):
                inner, inner_star = _top_level_names(block)
                names.update(inner)
                star = star or inner_star
    return names, star


def _blocks(node: ast.stmt) -> Iterator[list[ast.stmt]]:
    for name in ("body", "orelse", "finalbody"):
        block = getattr(node, name, None)
        if block:
            yield block
    for handler in getattr(node, "handlers", []) or []:
        yield handler.body


def _declared_flow_name(node: ast.AST) -> str | None:
    """``@flow(name="...")`` with a literal name."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call):
            continue
        target = decorator.func
        called = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else ""
        if called != "flow":
            continue
        for keyword in decorator.keywords:
            if (
                keyword.arg == "name"
                and isinstance(keyword.value, ast.Constant)
                and isinstance(keyword.value.value, str)
            ):
                return keyword.value.value
    return None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _yaml_kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({str(value)[:40]!r})"


# --------------------------------------------------------------------------------------------------
# Which deployments


def select(project: Project, config: Config) -> list[DeploymentSpec]:
    """The deployments ``DEPLOYMENT`` (or each entry of ``DEPLOYMENTS``) names, in that order; all of
    them when neither is set. For ACTION=deploy-and-run each name must select exactly one, so the
    names returned line up with what the run part runs."""
    available = ", ".join(spec.label for spec in project.deployments)
    refs = selection(config)
    if not refs:
        chosen = list(project.deployments)
    else:
        chosen = []
        for variable, ref in refs:
            if ref.is_id:
                raise DeployError(
                    f"{variable} {ref.text!r} is an id; ACTION={config.action} selects deployments of {project.shown} by name",
                    f"use one of: {available} (or a glob such as 'flow/*')",
                )
            found = [spec for spec in project.deployments if matches(spec, ref.text.strip())]
            if not found:
                raise DeployError(
                    f"{variable} {ref.text!r} matches none of the deployments in {project.shown}: {available}",
                    "use one of these names, a glob such as 'flow/*', or leave DEPLOYMENT unset to deploy them all",
                )
            if config.action == "deploy-and-run" and len(found) != 1:
                raise DeployError(
                    f"ACTION=deploy-and-run runs what it deploys, but {variable} {ref.text!r} selects "
                    f"{len(found)}: {', '.join(spec.label for spec in found)}",
                    "name exactly one 'flow-name/deployment-name', or use ACTION=deploy",
                )
            chosen.extend(spec for spec in found if spec not in chosen)
    for spec in chosen:
        if spec.problem:
            raise DeployError(*spec.problem)
    seen: dict[str, DeploymentSpec] = {}
    for spec in chosen:
        key = spec.label
        if key in seen:
            raise DeployError(
                f"{project.shown} has two deployments named {key!r} (#{seen[key].index + 1} and #{spec.index + 1})",
                "rename one of them; the second would overwrite the first",
            )
        seen[key] = spec
    return chosen


def selection(config: Config) -> list[tuple[str, DeploymentRef]]:
    """What the variables select, each with the variable it came from (for messages)."""
    targets = list(getattr(config, "targets", None) or [])  # DEPLOYMENTS, where config has it
    if len(targets) > 1:
        return [(f"DEPLOYMENTS item {index}", target.ref) for index, target in enumerate(targets)]
    if config.deployment is not None:
        return [("DEPLOYMENT", config.deployment)]
    return [("DEPLOYMENTS item 0", target.ref) for target in targets]


def matches(spec: DeploymentSpec, pattern: str) -> bool:
    """``flow/deployment`` or a bare deployment name; either part may be a glob (``*``, ``?``, ``[..]``)."""
    flow_part, slash, name_part = pattern.partition("/")
    if not slash:
        return fnmatch.fnmatchcase(spec.name, flow_part)
    return fnmatch.fnmatchcase(spec.name, name_part) and any(
        fnmatch.fnmatchcase(name, flow_part) for name in spec.flow_names
    )


# --------------------------------------------------------------------------------------------------
# What the CLI deploys: a copy of the file with the selection, the commit's tags and version


def deploy_tags(meta: CommitMetadata) -> list[str]:
    """Tags that say which commit and build a deployment's code came from. Prefect adds a deployment's
    tags to each of its flow runs, so they differ from the ``commit:``/``build:`` tags ACTION=run puts on
    a run (the build that *started* it)."""
    tags = []
    if meta.short_sha:
        tags.append(f"deploy-commit:{meta.short_sha}")
    if meta.build_number:
        tags.append(f"deploy-build:{meta.build_number}")
    return tags


def derived_document(project: Project, selected: list[DeploymentSpec], meta: CommitMetadata) -> dict[str, Any]:
    document = copy.deepcopy(project.document)
    originals = project.document["deployments"]
    extra_tags = deploy_tags(meta)
    entries = []
    for spec in selected:
        entry = copy.deepcopy(originals[spec.index])
        tags = entry.get("tags")
        if tags is None or isinstance(tags, list):  # a templated string is left to Prefect
            entry["tags"] = list(dict.fromkeys([*(tags or []), *extra_tags]))
        if entry.get("version") in (None, "") and meta.commit_sha:
            entry["version"] = meta.commit_sha[:8]
        entries.append(entry)
    document["deployments"] = entries
    return document


def _placeholders(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, str):
        found.update(_ENV_PLACEHOLDER.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            found |= _placeholders(item)
    elif isinstance(value, list):
        for item in value:
            found |= _placeholders(item)
    return found


def _resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """Prefect's ``{{ $NAME }}`` substitution for one string (unknown names stay as they are)."""
    if not isinstance(value, str):
        return value
    return _ENV_PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def pass_referenced_variables(config: Config, document: dict[str, Any], env: dict[str, str]) -> None:
    """Variables the prefect.yaml names as ``{{ $NAME }}`` reach the CLI when the step has them and they
    are not secret (by name, or by value: a registered secret or a URL with a password)."""
    for name in sorted(_placeholders(document)):
        value = config.env.get(name)
        if name not in env and value is not None and not _SECRET_NAME.search(name) and mask(value) == value:
            env[name] = value


def _check_placeholders(
    project: Project, document: dict[str, Any], env: Mapping[str, str], step_env: Mapping[str, str]
) -> None:
    """A ``{{ $NAME }}`` the CLI cannot resolve stays as it is. In a pull step a worker would resolve it
    at run time, to nothing for a ``BITBUCKET_*`` variable — cloning the default branch instead of this
    commit — so that is an error; anywhere else a warning."""
    pull_names = _placeholders(document.get("pull"))
    for entry in document["deployments"]:
        pull_names |= _placeholders(entry.get("pull"))
    for name in sorted(_placeholders(document) - set(env)):
        if name.startswith("BITBUCKET_") and name in pull_names:
            raise DeployError(
                f"a pull step in {project.shown} uses {{{{ ${name} }}}}, which this build does not set",
                f"use a Bitbucket variable every build sets (BITBUCKET_COMMIT), or remove {name} from the pull step",
            )
        secret = name in step_env
        reason = "is secret and is not passed on" if secret else "is not set in the pipe's environment"
        console.warning(
            f"{project.shown} uses {{{{ ${name} }}}}, which {reason}: Prefect keeps the placeholder as it is"
            + ("" if secret else f" (add {name} to the pipe's variables if the deploy needs it)")
        )


def _warn_without_pull_steps(project: Project, selected: list[DeploymentSpec], document: dict[str, Any]) -> None:
    if "pull" in document and document["pull"] is not None:
        return
    for entry, spec in zip(document["deployments"], selected, strict=True):
        if entry.get("pull") is None and not (entry.get("build") or document.get("build")):
            console.warning(
                f"Deployment {spec.label} has no pull step: Prefect points it at {project.root}, which exists only "
                "during this build. Add a git_clone pull step pinned to {{ $BITBUCKET_COMMIT }} (README: Deploy from the commit)"
            )


# --------------------------------------------------------------------------------------------------
# The CLI's environment


def subprocess_env(config: Config, credential: Credential, root: Path) -> dict[str, str]:
    """A minimal environment: what Prefect, git and build steps need, the credential, nothing else secret."""
    source = config.env
    env = {name: source[name] for name in _PASS_THROUGH if source.get(name)}
    env.update(
        {
            name: value
            for name, value in source.items()
            if name.startswith(_PASS_PREFIXES) and not _SECRET_NAME.search(name)
        }
    )
    env.setdefault("PATH", os.defpath)
    env.setdefault("HOME", tempfile.gettempdir())
    env["PREFECT_API_URL"] = config.api_url
    if credential.value and credential.kind == "api_key":
        env["PREFECT_API_KEY"] = credential.value.reveal()
    elif credential.value and credential.kind == "auth_string":
        env["PREFECT_API_AUTH_STRING"] = credential.value.reveal()
    for name, value in credential.cloud_env.items():
        env[name] = value.reveal()
    env.update(_CLI_SETTINGS)
    # git refuses a repository owned by another user (the clone, seen from the pipe's container) unless
    # it is a safe.directory; Prefect's version info and build steps run git there.
    env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0=str(root))
    return env


# --------------------------------------------------------------------------------------------------
# Work pools: checked before anything is deployed


def _check_work_pools(config: Config, credential: Credential, project: Project, selected: list[DeploymentSpec]) -> None:
    """Prefect stops at the first deployment whose work pool does not exist — after deploying the ones
    before it. Ask the API first, so a missing pool deploys nothing. Only a clear answer (404, 401)
    stops the pipe; anything else is left to ``prefect deploy``."""
    import httpx

    pools: dict[str, list[str]] = {}
    for spec in selected:
        if spec.work_pool and "{{" not in spec.work_pool:
            pools.setdefault(spec.work_pool, []).append(spec.label)
    if not pools:
        return
    headers = {}
    if credential.value and credential.kind == "api_key":
        headers["Authorization"] = f"Bearer {credential.value.reveal()}"
    elif credential.value and credential.kind == "auth_string":
        headers["Authorization"] = "Basic " + base64.b64encode(credential.value.reveal().encode()).decode()
    try:
        with httpx.Client(timeout=min(30.0, float(config.timeout)), headers=headers) as client:
            for pool, labels in pools.items():
                response = client.get(f"{config.api_url}/work_pools/{quote(pool, safe='')}")
                if response.status_code == 404:
                    raise DeployError(
                        f"{project.shown} references work pool {pool!r} (for {', '.join(labels)}) which does not exist "
                        f"in {config.api_url}; nothing was deployed",
                        f"create it (e.g. 'prefect work-pool create {pool} --type process') or fix work_pool.name",
                    )
                if response.status_code == 401:
                    raise DeployError(
                        f"The Prefect API at {config.api_url} rejected the credential (401 Unauthorized); nothing was deployed",
                        "check PREFECT_API_KEY or PREFECT_API_AUTH_STRING (expired, revoked, or another workspace's)",
                    )
    except httpx.HTTPError as exc:
        console.debug(f"Work pool check skipped ({type(exc).__name__}: {exc}); prefect deploy checks them itself")


# --------------------------------------------------------------------------------------------------
# Running the CLI


def run_cli(
    argv: list[str],
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    debug: bool,
    cancel: threading.Event | None = None,
) -> CliResult:
    """Run the CLI, streaming its output line by line; stop it at ``timeout`` or when ``cancel`` is set."""
    output = CliOutput(debug=debug)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its build steps too
        )
    except OSError as exc:
        raise DeployError(f"cannot start the Prefect CLI ({exc})", "report this with the output") from None
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in iter(proc.stdout.readline, b""):
                lines.put(raw)
        lines.put(None)

    reader = threading.Thread(target=pump, name="prefect-deploy-output", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    result = CliResult(code=None, output=output)
    try:
        while True:
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.timed_out = True
                break
            try:
                raw = lines.get(timeout=min(0.25, remaining))
            except queue.Empty:
                continue
            if raw is None:
                break
            output.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if result.cancelled or result.timed_out:
            _stop(proc)
        else:
            try:
                result.code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                result.timed_out = True
                _stop(proc)
    finally:
        if proc.poll() is None:
            _stop(proc)
        reader.join(timeout=5)
        proc.stdout.close()
    return result


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, KILL_GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _unbox(raw: str) -> str | None:
    """Rich panels, flattened: border lines dropped, ``│ text │`` reduced to the text."""
    line = raw.rstrip()
    stripped = line.strip()
    if stripped and set(stripped) <= _BOX_CHARS:
        return None
    if len(stripped) >= 2 and stripped[0] in "│┃║" and stripped[-1] in "│┃║":
        return stripped[1:-1].strip()
    return line


# --------------------------------------------------------------------------------------------------
# Reading a failure


def failure(output: CliOutput, shown: str, code: int | None, done: str = "") -> DeployError:
    """One line from the CLI's output: Prefect's own message and the fix."""
    lines = [line.strip() for line in output.lines if line.strip()]
    if any("Skipping deployment configuration due to validation errors" in line for line in lines):
        fields = [line.lstrip("•").strip() for line in lines if line.startswith("•")]
        return DeployError(
            f"Prefect rejected {shown}: invalid fields in {'; '.join(fields) or 'the file'}{done}",
            "fix those fields (the deployment schema: https://docs.prefect.io/v3/deploy/infrastructure-concepts/prefect-yaml)",
        )
    detail = ""
    if output.exceptions and lines and lines[-1] == "An exception occurred.":
        detail = exception_detail(output.exceptions)
    else:
        for line in reversed(lines):
            if line != "An exception occurred.":
                detail = line
                break
    detail = _MORE_INFO.sub("", mask(detail))
    if len(detail) > 400:
        detail = detail[:397] + "..."
    return DeployError(f"prefect deploy failed (exit {code}): {detail or 'no message'}{done}", _fix_for(detail, shown))


def exception_detail(exceptions: list[str]) -> str:
    """The last exception of a traceback chain, without its module path; a step failure also names
    the step's own error (the first exception of the chain)."""
    final = _short_exception(exceptions[-1])
    if "StepExecutionError" in exceptions[-1] and len(exceptions) > 1:
        return f"{final}: {_short_exception(exceptions[0])}"
    return final


def _short_exception(line: str) -> str:
    kind, sep, message = line.partition(": ")
    if sep and re.fullmatch(r"[\w.]+", kind):
        return f"{kind.rsplit('.', 1)[-1]}: {message.strip()}"
    return line.strip()


_FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"work pool '(?P<pool>[^']*)' which does not exist"),
        "create the work pool (e.g. 'prefect work-pool create {pool} --type process') or fix work_pool.name in {file}",
    ),
    (re.compile(r"A work pool is required"), "set 'work_pool: {{name: <pool>}}' for each deployment in {file}"),
    (re.compile(r"MissingFlowError|is not a flow"), "fix the entrypoint in {file}: path/to/file.py:flow_function"),
    (re.compile(r"ScriptError|SyntaxError"), "fix the flow file named in the message and commit it"),
    (
        re.compile(r"401|Unauthorized"),
        "check PREFECT_API_KEY or PREFECT_API_AUTH_STRING (expired, revoked, or another workspace's)",
    ),
    (
        re.compile(r"403|Forbidden"),
        "deploying writes deployments: use a key whose role may create them (Prefect Cloud role Developer or higher)",
    ),
    (
        re.compile(r"ConnectError|ConnectTimeout|connection attempts failed|Name or service not known|getaddrinfo"),
        "check PREFECT_API_URL and that it is reachable from Bitbucket's runners",
    ),
    (
        re.compile(r"StepExecutionError|run_shell_script"),
        "fix the failing build or push step of {file} (its output is above)",
    ),
    (re.compile(r"422|Unprocessable"), "Prefect refused a field of the deployment: fix it in {file}"),
)


def _fix_for(detail: str, shown: str) -> str:
    for pattern, fix in _FIXES:
        if match := pattern.search(detail):
            return fix.format(file=shown, **match.groupdict())
    return "see the prefect deploy output above"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
