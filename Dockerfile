# The prefect-trigger pipe. Builds on the official python:3.12-slim or on any Debian-like base with
# python3 and its venv module (e.g. the stand-in made by .ci/docker-setup):
#   docker build --build-arg BASE_IMAGE=prefect-trigger-base:bookworm -t prefect-trigger:dev .
# Behind a TLS-intercepting proxy, hand its CA certificate(s) to the builder stages only:
#   docker build --build-arg EXTRA_CA_CERTS="$(cat corp-ca.pem)" -t prefect-trigger:dev .
ARG BASE_IMAGE=python:3.12-slim

# ---------------------------------------------------------------------------------------------------
# venv: what both builders start from: an empty venv at /opt/venv, and pip set to install without a cache
# or bytecode, trusting EXTRA_CA_CERTS (PEM text of a corporate TLS proxy's CA certificates; optional)
# besides the usual ones. Nothing of it but /opt/venv reaches an image.
FROM ${BASE_IMAGE} AS venv
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]
ARG EXTRA_CA_CERTS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_COMPILE=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_CERT=/tmp/build-ca.pem \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv \
 && { cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || cat "$(/opt/venv/bin/python -m pip._vendor.certifi)"; \
      printf '%s\n' "$EXTRA_CA_CERTS"; } > /tmp/build-ca.pem

# ---------------------------------------------------------------------------------------------------
# The gateway's image (docker build --target gateway -t org/prefect-trigger-gateway .): the identity-aware
# gateway for self-hosted Prefect (python -m gateway). Its own small venv (Starlette, uvicorn, httpx,
# websockets, PyJWT, PyYAML; no prefect). These stages come before the pipe's, which stays the default.
FROM venv AS gateway-builder
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]
COPY gateway/requirements.txt /tmp/gateway-requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/gateway-requirements.txt \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && rm -f /tmp/gateway-requirements.txt \
 && find /opt/venv -depth -type d -name __pycache__ -exec rm -rf {} + \
 && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv > /dev/null
COPY gateway /opt/gateway/gateway
RUN rm -rf /opt/gateway/gateway/deploy \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/gateway \
 && PYTHONPATH=/opt/gateway /opt/venv/bin/python -c 'import gateway.app, gateway.cli, uvicorn, websockets, jwt, yaml' \
 && PYTHONPATH=/opt/gateway /opt/venv/bin/python -m gateway --help > /dev/null

FROM ${BASE_IMAGE} AS gateway
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/gateway \
    PYTHONSAFEPATH=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
COPY --from=gateway-builder /opt/venv /opt/venv
COPY --from=gateway-builder /opt/gateway /opt/gateway
WORKDIR /opt/gateway
# No secrets in the image: PREFECT_GATEWAY_UPSTREAM_AUTH_STRING and PREFECT_GATEWAY_SIGNING_KEY come from
# the environment (or --upstream-auth-string-file / --signing-key-file), the policy from a mounted file.
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/python", "-m", "gateway"]
CMD ["--policy", "/etc/prefect-gateway/policy.yaml", "--listen", "0.0.0.0:8080"]

# ---------------------------------------------------------------------------------------------------
# builder: the runtime venv, slimmed and precompiled. Nothing of this stage but /opt reaches the image.
FROM venv AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]

# botocore service models to keep: what the pipe calls (STS, Secrets Manager, SSM), SSO for the
# credential chain, and S3 for `prefect deploy` push steps. Everything else is dropped (~20 MB).
ARG BOTOCORE_SERVICES="sts secretsmanager ssm sso sso-oidc s3"

COPY requirements.txt /tmp/requirements.txt

# One layer: the pinned requirements, slimmed and precompiled —
#  - the toolkit needs GitPython only for its test helper. docker (the Python package) stays: Prefect
#    requires it, and without it a `prefect_docker` build or push step fails in every fresh step
#    container (ModuleNotFoundError: No module named 'docker');
#  - setuptools (Python 3.11 venvs get it; nothing imports it at run time; 3.12 venvs lack it anyway);
#  - prefect's UI bundles: the pipe is a client and never serves the UI;
#  - botocore/boto3 data of services the pipe never calls (endpoints/partitions/*.json stay);
#  - bytecode compiled once here (unchecked-hash: sources never change in the image), so a pipe start
#    does not compile prefect and its dependencies at every step. pip is left out (8 MB): the pipe never
#    imports it, only `prefect deploy` runs it for a step's `requires:`. Files for newer Pythons
#    (whenever/_typing_312.py on 3.11) cannot compile and are never imported: listed, not fatal.
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes GitPython gitdb smmap setuptools \
 && site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && rm -rf "$site/prefect/server/ui" "$site/prefect/server/ui-v2" \
 && for dir in "$site"/botocore/data/*/ "$site"/boto3/data/*/; do \
        name=$(basename "$dir"); \
        case " $BOTOCORE_SERVICES " in *" $name "*) ;; *) rm -rf "$dir" ;; esac; \
    done \
 && rm -f /tmp/requirements.txt \
 && find /opt/venv -depth -type d -name __pycache__ -exec rm -rf {} + \
 && { /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x '/site-packages/pip/' /opt/venv \
        | grep -E '^\*\*\* Error compiling' || true; } \
 && /opt/venv/bin/python -c 'import boto3; [boto3.client(s, region_name="eu-west-1") for s in ("sts", "secretsmanager", "ssm")]'

COPY pipe /opt/pipe/pipe
COPY pipe.yml README.md LICENSE /opt/pipe/

# The pipe's own bytecode, then a smoke test of what the slimming must not break.
RUN /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/pipe \
 && PYTHONPATH=/opt/pipe /opt/venv/bin/python -c 'import pipe.main, prefect.cli.deploy, bitbucket_pipes_toolkit, hvac, google.auth, docker' \
 && /opt/venv/bin/prefect --help > /dev/null

# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]

# PYTHONSAFEPATH: `python -m pipe` must not import a `pipe` package or module from the working
# directory (the user's clone); the pipe lives on PYTHONPATH. No bytecode is written into the clone.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/pipe \
    PYTHONSAFEPATH=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# The official image ships its standard library without bytecode: compile what is missing (a no-op on
# a base that has it, such as Debian's python3; ~12 MB where it is not), leaving out what a pipe never
# imports. Before the COPYs: it depends on the base only, so it stays cached.
RUN stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))') \
 && { python3 -m compileall -q -j 0 -x '/(test|tests|idlelib|lib2to3|turtledemo|tkinter|ensurepip|site-packages|dist-packages)/' "$stdlib" \
        | grep -E '^\*\*\* Error compiling' || true; }

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/pipe /opt/pipe

WORKDIR /opt/pipe
ENTRYPOINT ["/opt/venv/bin/python", "-m", "pipe"]
