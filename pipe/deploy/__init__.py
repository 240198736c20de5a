"""Deploy: Prefect's own ``prefect deploy`` on the repository's prefect.yaml, for the commit being built.

The pipe does not re-implement deploying: it runs the Prefect CLI of its image as a subprocess, in
the clone, never prompting. Around it the pipe does what a build step needs:

* **Fail early, create nothing.** The prefect.yaml is read here first (PyYAML): missing file, YAML
  errors, no ``deployments``, a ``DEPLOYMENT`` selection that matches nothing (the message lists what
  is there), an entrypoint file that is missing or does not parse, no work pool, a work pool the API
  does not know, a schedule, trigger or concurrency limit Prefect would refuse, a ``{{ $NAME }}`` the
  step does not set, a ``{{ prefect.blocks... }}`` or ``{{ prefect.variables... }}`` the server does
  not have — each is one line before the CLI starts. Prefect deploys several deployments one after
  the other and stops at the first failure, so these checks are what keeps a bad file from leaving
  half of its deployments updated.
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
* **The project's environment.** A pipe gets only the variables its step hands it, and those are
  meant for the project: the CLI and its build and push steps get them (a user's secret masked in the
  log), never the pipe's own Prefect and Bitbucket credentials; the API URL, the credential and TLS
  verification are pinned so a ``prefect.toml`` or ``.env`` in the clone cannot change them.
* **Readable output.** The CLI prints plain text (no colours, no wrapping, no panels) into the build
  log line by line, masked; a traceback is reduced to its exception line unless ``DEBUG``. A failure
  is one :class:`~pipe.errors.DeployError` line with Prefect's own message and the fix.

The package, one module per concern: :mod:`~pipe.deploy.project` reads the prefect.yaml and the
entrypoints, :mod:`~pipe.deploy.selection` picks the deployments, :mod:`~pipe.deploy.document` derives
the copy the CLI reads, :mod:`~pipe.deploy.placeholders` reads Prefect's templates,
:mod:`~pipe.deploy.references` and :mod:`~pipe.deploy.preflight` check what they name and what Prefect
validates per deployment, :mod:`~pipe.deploy.work_pools` asks the API for the work pools,
:mod:`~pipe.deploy.environment` makes the CLI's environment, :mod:`~pipe.deploy.cli` runs the CLI and
:mod:`~pipe.deploy.failures` reads its failure.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import yaml

from pipe import console
from pipe.config import Config
from pipe.credentials import Credential
from pipe.deploy.cli import prefect_version, run_deploy
from pipe.deploy.document import derived_document, refuse_credentials, warn_about_pull_steps
from pipe.deploy.environment import subprocess_env
from pipe.deploy.failures import failure
from pipe.deploy.placeholders import resolve_env
from pipe.deploy.preflight import check_deployment_fields
from pipe.deploy.project import clone_dir, load_project, prefect_file_setting
from pipe.deploy.references import check_environment_references, check_server_references
from pipe.deploy.selection import select
from pipe.deploy.work_pools import check_work_pools
from pipe.errors import DeployError

__all__ = ["deploy"]


def deploy(config: Config, credential: Credential, *, cancel: threading.Event | None = None) -> list[str]:
    """Run ``prefect --no-prompt deploy`` on the repository's prefect.yaml; return the deployed names
    (``flow/deployment``, as Prefect registered them).

    ``cancel`` (set from another thread, e.g. when the step is stopped) ends the CLI early. With
    ``DRY_RUN`` everything is checked (file, selection, work pools) and nothing is deployed; the
    names returned are the expected ones. Raises :class:`DeployError` with one line (Prefect's
    message and the fix) on any failure; ``TIMEOUT`` bounds the CLI.
    """
    step_env = config.deploy.environment
    root = clone_dir(config.deploy.clone_dir)
    env = subprocess_env(step_env, config.api_url, credential, root)
    project = load_project(root, prefect_file_setting(config.deploy.prefect_file), env)
    refuse_credentials(project, step_env, credential)
    selected = select(project, config)
    document = derived_document(project, selected, config.build)
    if config.action == "preview":  # the same deployments, as this pull request's previews
        from pipe.preview import document as preview
        from pipe.preview import guard

        selected = preview.renamed(selected, config)
        document = preview.preview_document(document, selected, config, env)
        guard.check_names(config, credential, selected, cancel)
    check_environment_references(project, document, env)
    check_deployment_fields(project, selected, document, env)
    warn_about_pull_steps(project, selected, document, env, config.build)
    check_work_pools(config, credential, project, selected, cancel)
    check_server_references(config, credential, project, document, cancel)

    labels = ", ".join(spec.label for spec in selected)
    version_note = _version_note(document, env)
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=4096)
    if config.dry_run:
        console.info(f"DRY_RUN: {project.shown} checked; would deploy {labels}{version_note}; nothing was deployed")
        console.plain(f"prefect --no-prompt deploy --all would read:\n{text.rstrip()}")
        return [spec.label for spec in selected]
    console.info(
        f"Deploying {_count(len(selected), 'deployment')} of {project.shown} with prefect {prefect_version()}: "
        f"{labels}{version_note}"
    )
    result = run_deploy(text, project.path.name, env, root, float(config.timeout), config.debug, cancel)

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


def _version_note(document: dict[str, Any], env: Mapping[str, str]) -> str:
    """The versions the deployments get, as far as they are known before the CLI runs: one that names a
    build step's output (``rel-{{ info.stdout }}``) is set only while Prefect deploys."""
    versions = sorted({str(resolve_env(e.get("version"), env)) for e in document["deployments"] if e.get("version")})
    shown = [version for version in versions if "{{" not in version]
    if len(shown) < len(versions):
        shown.append("set by a build step")
    return f" (version {', '.join(shown)})" if shown else ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
