# syntax=docker/dockerfile:1
# Multi-stage build of the superloop-ops operator image.
#   docker build -t superloop-ops .
#   podman build --build-arg BASE_IMAGE=localhost/superloop-ops-base:... .   (e2e/harness/build-image.sh)
# Stage 1 installs the dependencies pinned with their hashes in requirements.lock, then the package
# itself (no resolution, no other download) into a virtualenv; stage 2 copies only that
# virtualenv and runs as an unprivileged user.
# BASE_IMAGE: any image with CPython 3.11 as `python` (with venv), groupadd and useradd; a
# Debian bookworm rootfs made locally by e2e/harness/build-image.sh serves where nothing can be pulled.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
# The optional build secret `ca-bundle` is a CA bundle for a TLS-intercepting proxy between the
# build and PyPI (`--secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt`); the hashes
# in the lock still decide what is installed.
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python -m venv /opt/superloop-ops \
 && /opt/superloop-ops/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml ./
COPY operator/ operator/
# the package data (operator/src/superloop_ops/data/) are symlinks into config/
COPY config/ config/
RUN /opt/superloop-ops/bin/pip install --no-deps --no-build-isolation --no-index .

FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 superloop \
 && useradd --system --uid 10001 --gid superloop --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin superloop \
 && mkdir -p /var/lib/superloop/state /etc/superloop-ops \
 && chown superloop:superloop /var/lib/superloop/state
COPY --from=build /opt/superloop-ops /opt/superloop-ops
COPY config/*.json /etc/superloop-ops/
ENV PATH=/opt/superloop-ops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SUPERLOOP_STATE_DIR=/var/lib/superloop/state \
    SUPERLOOP_CONFIG_DIR=/etc/superloop-ops
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["kopf", "run", "-m", "superloop_ops.main", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
