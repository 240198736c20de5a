"""``python -m gateway --policy FILE [--listen HOST:PORT] [--workers N]``.

Secrets never come from the policy or the command line: the Prefect server's auth string from
``PREFECT_GATEWAY_UPSTREAM_AUTH_STRING`` or ``--upstream-auth-string-file``, the session-token signing
key (≥ 32 bytes, the same on every replica) from ``PREFECT_GATEWAY_SIGNING_KEY`` or ``--signing-key-file``.
Every start-up problem is one line naming the setting, the cause and the fix, and exit status 1
(a traceback only with ``DEBUG=true``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.app import Settings

AUTH_STRING_VARIABLE = "PREFECT_GATEWAY_UPSTREAM_AUTH_STRING"
SIGNING_KEY_VARIABLE = "PREFECT_GATEWAY_SIGNING_KEY"
# How the command line hands its choices to uvicorn's worker processes (paths only, never secrets).
POLICY_PATH_VARIABLE = "PREFECT_GATEWAY_POLICY"
AUTH_STRING_FILE_VARIABLE = "PREFECT_GATEWAY_UPSTREAM_AUTH_STRING_FILE"
SIGNING_KEY_FILE_VARIABLE = "PREFECT_GATEWAY_SIGNING_KEY_FILE"
MIN_SIGNING_KEY_BYTES = 32
GRACEFUL_SHUTDOWN_SECONDS = 15


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway", description="Identity-aware gateway for a Prefect server")
    p.add_argument("--policy", required=True, help="the policy YAML file")
    p.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT to listen on (default 0.0.0.0:8080)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument(
        "--upstream-auth-string-file", help=f"file holding the server's auth string (else ${AUTH_STRING_VARIABLE})"
    )
    p.add_argument("--signing-key-file", help=f"file holding the session signing key (else ${SIGNING_KEY_VARIABLE})")
    return p


def _secret(name: str, file_option: str, file: str | None, env: Mapping[str, str], what: str) -> str:
    value = env.get(name)
    if file and value:
        raise GatewayError(f"both {name} and {file_option} are set", f"set only one of them ({what})")
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GatewayError(
                f"{file_option} {file}: cannot read it ({exc.strerror})", f"make it readable ({what})"
            ) from None
    if not value or not value.strip():
        raise GatewayError(f"{name} is not set", f"set it, or pass {file_option}, to {what}")
    return value.strip()


def load_settings(policy_path: str, auth_file: str | None, key_file: str | None, env: Mapping[str, str]) -> Settings:
    from gateway import policy
    from gateway.app import Settings

    auth_string = _secret(
        AUTH_STRING_VARIABLE,
        "--upstream-auth-string-file",
        auth_file,
        env,
        "the Prefect server's PREFECT_SERVER_API_AUTH_STRING",
    )
    key = _secret(
        SIGNING_KEY_VARIABLE, "--signing-key-file", key_file, env, "at least 32 random bytes shared by the replicas"
    )
    if len(key.encode("utf-8")) < MIN_SIGNING_KEY_BYTES:
        raise GatewayError(
            f"{SIGNING_KEY_VARIABLE} is shorter than {MIN_SIGNING_KEY_BYTES} bytes",
            "use e.g. `openssl rand -base64 48` and give every replica the same value",
        )
    return Settings(
        policy=policy.load(policy_path),
        upstream_auth_string=auth_string,
        signing_key=key.encode("utf-8"),
        debug=debug_requested(env),
    )


def debug_requested(env: Mapping[str, str]) -> bool:
    """DEBUG=true: tracebacks instead of one line (start-up) and instead of a 500 (a request)."""
    return env.get("DEBUG", "").strip().lower() == "true"


def settings_from_environment() -> Settings:
    env = os.environ
    return load_settings(
        env[POLICY_PATH_VARIABLE], env.get(AUTH_STRING_FILE_VARIABLE), env.get(SIGNING_KEY_FILE_VARIABLE), env
    )


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise GatewayError(f"--listen {text!r} is not HOST:PORT", "use e.g. 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    debug = debug_requested(os.environ)
    try:
        host, port = _listen(args.listen)
        if args.workers < 1:
            raise GatewayError(f"--workers {args.workers} is below 1", "use 1 or more worker processes")
        settings = load_settings(args.policy, args.upstream_auth_string_file, args.signing_key_file, os.environ)
    except GatewayError as exc:
        if debug:
            raise
        print(exc.line(), file=sys.stderr, flush=True)
        return 1
    import uvicorn

    from gateway.app import create_app

    common = {
        "host": host,
        "port": port,
        "log_level": "debug" if debug else "warning",
        "access_log": False,  # the audit line is the access log
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "server_header": False,
        "lifespan": "on",
    }
    rules = len(settings.policy.rules)
    print(f"prefect gateway on {host}:{port}, {rules} rule(s), {args.workers} worker(s)", file=sys.stderr, flush=True)
    if args.workers == 1:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return 0
    os.environ[POLICY_PATH_VARIABLE] = str(Path(args.policy).resolve())
    for variable, file in (
        (AUTH_STRING_FILE_VARIABLE, args.upstream_auth_string_file),
        (SIGNING_KEY_FILE_VARIABLE, args.signing_key_file),
    ):
        if file:
            os.environ[variable] = str(Path(file).resolve())
    uvicorn.run("gateway.app:app_from_environment", factory=True, workers=args.workers, **common)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
