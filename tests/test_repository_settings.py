"""The repository's files never change how the pipe's own Prefect client verifies TLS.

Prefect reads ``prefect.toml``, ``.env`` and ``pyproject.toml`` ``[tool.prefect]`` from the working
directory, and a step runs the pipe in the user's clone. A man in the middle with a certificate nobody
trusts stands in for the Prefect API here: the pipe must refuse it whatever the clone's files say, and
send it nothing.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.pipe import BITBUCKET_ENV, ROOT, run_pipe

SECRET = "admin:settings-from-the-clone-must-not-leak-this"


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(f"{self.command} {self.path} {self.headers.get('Authorization', '')}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        return None


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "mitm.pem", directory / "mitm.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture()
def man_in_the_middle(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    cert_file, key_file = _self_signed(tmp_path)
    seen: ClassVar[list[str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/api", seen
    finally:
        server.shutdown()
        server.server_close()


SETTINGS_FILES = {
    "prefect.toml": '[api]\ntls_insecure_skip_verify = true\n\n[client]\ncustom_headers = {"X-From-The-Clone" = "1"}\n',
    ".env": "PREFECT_API_TLS_INSECURE_SKIP_VERIFY=true\n",
    "pyproject.toml": "[tool.prefect.api]\ntls_insecure_skip_verify = true\n",
}


@pytest.mark.parametrize("name", sorted(SETTINGS_FILES))
def test_a_settings_file_in_the_clone_cannot_switch_off_tls_verification(
    name: str, man_in_the_middle: tuple[str, list[str]], tmp_path: Path
) -> None:
    api_url, seen = man_in_the_middle
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / name).write_text(SETTINGS_FILES[name])
    env = {
        **BITBUCKET_ENV,
        "PYTHONPATH": str(ROOT),
        "BITBUCKET_CLONE_DIR": str(clone),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_AUTH_STRING": SECRET,
        "DEPLOYMENT": "greet/ci",
        "REPORT": "false",
    }
    result = run_pipe(env, timeout=120, cwd=clone)

    assert result.code == 1, result
    assert seen == [], "a request reached the untrusted server"
    assert "certificate" in result.output.lower(), result
    assert SECRET.split(":")[1] not in result.output
