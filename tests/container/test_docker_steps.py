"""ACTION=deploy from the pipe's image with the Docker build and push steps many teams deploy with:
``prefect_docker``'s ``build_docker_image`` and ``push_docker_image``, against a real engine reached
through ``DOCKER_HOST`` as Bitbucket's ``docker`` service gives it (``tcp://…``), pushing to a real
registry (Debian's ``docker-registry``, the distribution registry, on loopback) that wants a login.

``prefect-docker`` is not in the image: Prefect installs it from the step's ``requires:`` at deploy
time, in every fresh container, as it would in Bitbucket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import socketserver
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.conftest import Image, docker, run_container, unavailable
from tests.deploy.repo import FLOW, Repo, read_deployment
from tests.support.leaks import assert_no_secrets
from tests.support.prefect_server import PrefectServer
from tests.support.processes import Process, free_port

pytestmark = pytest.mark.container

ENGINE_SOCKET = Path("/var/run/docker.sock")
REGISTRY_USER = "ci"
REGISTRY_PASSWORD = "registry-pass-5678"  # a test-only password; its bcrypt hash below
REGISTRY_HTPASSWD = f"{REGISTRY_USER}:$2b$12$RcLwiguZOqxn500kn8fxZOHM3jEByGtrU3dBqH2gSZ.Bz89czlmQG\n"
DEPLOY_TIMEOUT = 600  # installing prefect-docker, building and pushing, on a busy 2-core machine


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on loopback that wants a login (htpasswd); its address, ``127.0.0.1:PORT``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("no docker-registry (Debian's package; .ci/docker-setup installs it)")
    home = tmp_path_factory.mktemp("registry")
    (home / "htpasswd").write_text(REGISTRY_HTPASSWD)
    port, debug_port = free_port(), free_port()
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(home / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "debug": {"addr": f"127.0.0.1:{debug_port}"}},
        "auth": {"htpasswd": {"realm": "pipe-tests", "path": str(home / "htpasswd")}},
    }
    (home / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    process = Process([binary, "serve", str(home / "config.yml")], home / "registry.log")
    try:
        process.wait_healthy(f"http://127.0.0.1:{debug_port}/debug/health", timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


class _Forward(socketserver.BaseRequestHandler):
    """One connection to the engine's socket, bytes copied both ways until either side closes."""

    def handle(self) -> None:
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(str(ENGINE_SOCKET))

        def pump(source: socket.socket, target: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    target.sendall(data)
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(engine, self.request), daemon=True)
        back.start()
        pump(self.request, engine)
        back.join(timeout=DEPLOY_TIMEOUT)
        engine.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def docker_service() -> Iterator[str]:
    """The engine as a Bitbucket step's ``docker`` service shows it: ``DOCKER_HOST=tcp://…`` (here a
    loopback forwarder to this machine's engine socket)."""
    if not ENGINE_SOCKET.exists():
        unavailable(f"no engine socket at {ENGINE_SOCKET}")
    server = _Server(("127.0.0.1", 0), _Forward)
    thread = threading.Thread(target=server.serve_forever, name="docker-service", daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def registry_tags(registry: str, repository: str) -> list[str]:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/tags/list")
    login = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {login}")
    with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(request, timeout=10) as response:
        return list(json.load(response).get("tags") or [])
    return []


def test_build_and_push_docker_image_steps(
    pipe_image: Image,
    pipe_env: dict[str, str],
    prefect_server: PrefectServer,
    registry: str,
    docker_service: str,
    tmp_path: Path,
) -> None:
    repo = Repo(tmp_path / "repo")
    repository = f"pipe-tests/flows-{repo.a}"
    repo.write("flows/pinned.py", FLOW.format(marker="in-the-image"))
    repo.write("Dockerfile", f"FROM {pipe_image.base}\nCOPY flows /opt/prefect/flows\n")
    repo.write(
        "prefect.yaml",
        f"""\
build:
  - prefect_docker.deployments.steps.build_docker_image:
      id: build-image
      requires: prefect-docker>=0.6
      image_name: {registry}/{repository}
      tag: "{{{{ $BITBUCKET_COMMIT }}}}"
      dockerfile: Dockerfile
      pull: false
push:
  - prefect_docker.deployments.steps.push_docker_image:
      requires: prefect-docker>=0.6
      image_name: "{{{{ build-image.image_name }}}}"
      tag: "{{{{ build-image.tag }}}}"
      credentials:
        username: {REGISTRY_USER}
        password: "{{{{ $REGISTRY_PASSWORD }}}}"
        registry_url: {registry}
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /opt/prefect
deployments:
  - name: {repo.a}
    entrypoint: flows/pinned.py:run_pinned
    work_pool:
      name: pipe-tests
""",
    )
    sha = repo.commit("docker build")
    env = {
        **pipe_env,
        "ACTION": "deploy",
        "BITBUCKET_CLONE_DIR": str(repo.path),
        "BITBUCKET_COMMIT": sha,
        "DOCKER_HOST": docker_service,
        "REGISTRY_PASSWORD": REGISTRY_PASSWORD,  # the user's own secret, handed to the pipe for its push step
        "TIMEOUT": str(DEPLOY_TIMEOUT),
    }
    env.pop("DEPLOYMENT")
    try:
        result = run_container(pipe_image, env, repo.path, timeout=DEPLOY_TIMEOUT + 60)
    finally:
        docker("image", "rm", f"{registry}/{repository}:{sha}", check=False)

    assert result.code == 0, result
    assert "No module named 'docker'" not in result.output, result
    assert f"Deployment 'pinned-code/{repo.a}' successfully created" in result.output, result
    assert sha in registry_tags(registry, repository), result  # pushed, with the login the step was handed
    deployment = read_deployment(prefect_server, f"pinned-code/{repo.a}")
    assert deployment is not None and deployment.version == sha[:8]
    assert_no_secrets(result.output, prefect_server.auth_string, REGISTRY_PASSWORD)
