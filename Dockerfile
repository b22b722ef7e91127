# syntax=docker/dockerfile:1
# Multi-stage build of the superloop-ops operator image.
#   docker build -t superloop-ops .
# Stage 1 installs the package and its dependencies into a virtualenv;
# stage 2 copies only that virtualenv and runs as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY operator/ operator/
# the package data (operator/src/superloop_ops/data/) are symlinks into config/
COPY config/ config/
RUN python -m venv /opt/superloop-ops \
 && /opt/superloop-ops/bin/pip install --upgrade pip \
 && /opt/superloop-ops/bin/pip install .

FROM python:3.11-slim AS runtime
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
