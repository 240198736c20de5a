"""The repository's prefect.yaml as the pipe reads it before the CLI does: where it is, whether it is
a file Prefect can deploy, and what each deployment's entrypoint names (from the flow file's syntax
tree: nothing is executed).

A problem with one deployment (its entrypoint file is missing or does not parse, it has no work pool)
is kept on its :class:`DeploymentSpec` and becomes an error only when that deployment is selected.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipe.deploy.placeholders import resolve_env
from pipe.errors import DeployError

DEFAULT_PREFECT_FILE = "prefect.yaml"
MAX_PREFECT_FILE_BYTES = 1024 * 1024


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


def clone_dir(root: Path) -> Path:
    """The clone (BITBUCKET_CLONE_DIR, else the working directory the pipe started in), checked."""
    if not root.is_dir():
        raise DeployError(
            f"BITBUCKET_CLONE_DIR {str(root)!r} is not a directory", "run the pipe in a step that clones the repository"
        )
    return root.resolve()


def prefect_file_setting(value: object) -> str:
    """PREFECT_FILE as the step sets it (``value``; unset: the default), checked."""
    setting = str(value or DEFAULT_PREFECT_FILE).strip() or DEFAULT_PREFECT_FILE
    if re.search(r"[\x00-\x1f\x7f]", setting):
        raise DeployError("PREFECT_FILE contains control characters", "set it to a path such as 'prefect.yaml'")
    return setting


def load_project(root: Path, setting: str, env: Mapping[str, str]) -> Project:
    """Read and check the prefect.yaml (``setting``, PREFECT_FILE, relative to ``root``, the clone);
    ``env`` is the CLI's environment, for its ``{{ $NAME }}`` placeholders."""
    path, document = read_prefect_file(root, setting)
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
    name = str(resolve_env(name.strip(), env))
    where = f"{shown}: deployment {name!r}"
    entrypoint = entry.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        return _broken(index, name, f"{where} has no entrypoint", "set 'entrypoint: path/to/file.py:flow_function'")
    entrypoint = str(resolve_env(entrypoint.strip(), env))
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
        work_pool=str(resolve_env(pool, env)) if isinstance(pool, str) else None,
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
